"""Prompt ensembles: soft prompts on one base model that route by per-department vote."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from router.artifact import ArtifactError, load_tuned_model
from router.ensemble import vote, voted_departments
from router.results import Routing
from router.service import RouterService
from tests.conftest import make_tiny_base, tune_tiny
from tests.test_late_prompt import TEXTS, _deep_tiny, _tune

MORE_TEXTS = TEXTS + ["the manual is in the wrong language", "my parcel arrived soaked", "the app crashes at login",
                      "the discount code never worked", "the screws were missing", "wrong colour delivered"]


def _routing(departments, confidence=0.9):
    return Routing(departments=departments, confidence={d: confidence for d in departments}, strategy="tuned",
                   input_tokens=5, generated_tokens=2, latency_ms=1.0)


def test_a_department_needs_a_majority_and_without_one_the_first_prompt_answers():
    assert voted_departments([["Planning", "L3"], ["L3"], ["Planning", "Service"]]) == ["Planning", "L3"]
    assert voted_departments([["Service"], ["Warehouse"], ["Marketing"]]) == ["Service"]
    assert voted_departments([["Marketing", "Service"], ["Service", "Marketing"], ["L3"]]) == ["Service", "Marketing"]
    departments, confidence = vote([_routing(["L3"], 0.9), _routing(["L3"], 0.6), _routing(["Planning"], 0.8)])
    assert departments == ["L3"]
    assert confidence == {"L3": pytest.approx(0.5)}, "a split vote is a low-confidence answer"


@pytest.fixture
def tiny_prompts(tokenizer, tiny_train_file, tmp_path):
    base = _deep_tiny(tokenizer)
    paths = [_tune(base, tiny_train_file, tmp_path / f"p{i}", prompt_layer=1 + i % 2, seed=7 * i + 1, init="random",
                   epochs=1)[0] for i in range(4)]
    return base, paths


def test_the_ensemble_routes_as_the_vote_of_its_prompts_each_routed_alone(tiny_prompts, tiny_train_file, tmp_path):
    from router.settings import Settings
    from tuning.ensemble import assemble_prompt_ensemble

    base, four = tiny_prompts
    paths = four[:3]
    out = assemble_prompt_ensemble(paths, tmp_path / "ens", "ens-v1")
    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, speculative_draft=False)
    service = RouterService(settings, base=base, tuned_path=out)
    alone = [service.route_many(MORE_TEXTS, "tuned", model=str(p)) for p in paths]
    answers = [[r.departments for r in routed] for routed in alone]
    split = [i for i in range(len(MORE_TEXTS)) if answers[0][i] != answers[1][i]]
    assert split, "the first two prompts disagree somewhere, so the third one's vote is exercised"
    ensemble = service.route_many(MORE_TEXTS, "tuned")
    for i, routing in enumerate(ensemble):
        assert routing.departments == voted_departments([a[i] for a in answers])
        assert routing.model_version == "ens-v1"
        ran = alone[:2] if i not in split else alone  # the third runs only where the first two disagree
        for name in routing.departments:
            want = sum(r[i].confidence.get(name, 0.0) for r in ran if name in r[i].departments) / len(ran)
            assert routing.confidence[name] == pytest.approx(want, abs=1e-4)
        assert routing.needs_review == (min(routing.confidence.values()) < service.engine.threshold)
    from router.reference import generate_reference, load_reference

    plain = generate_reference(base, load_reference(base, out), MORE_TEXTS)
    assert [names for names, _ in plain] == [r.departments for r in ensemble], "the plain path (each member's " \
        "generate(), then the vote) gives the fast path's answers"
    even = assemble_prompt_ensemble(four, tmp_path / "ens4", "ens-4")  # three run first, the fourth where they split
    fourth = [r.departments for r in service.route_many(MORE_TEXTS, "tuned", model=str(four[3]))]
    by_four = service.route_many(MORE_TEXTS, "tuned", model=str(even))
    assert [r.departments for r in by_four] == [voted_departments([a[i] for a in answers + [fourth]])
                                                for i in range(len(MORE_TEXTS))]
    one_by_one = [service.route(t, "tuned").departments for t in MORE_TEXTS]
    assert one_by_one == [r.departments for r in ensemble], "batched and alone agree"
    mixed = service.route_mixed(MORE_TEXTS, [None, str(paths[1])] * (len(MORE_TEXTS) // 2))
    for i, routing in enumerate(mixed):
        want = ensemble[i] if i % 2 == 0 else alone[1][i]
        assert (routing.departments, routing.model_version) == (want.departments, want.model_version)


def test_ensemble_artifact_round_trip_and_refusals(tiny_prompts, tiny_base, tiny_train_file, tokenizer, tmp_path):
    from tuning.ensemble import assemble_prompt_ensemble

    base, four = tiny_prompts
    paths = four[:3]
    out = assemble_prompt_ensemble(paths, tmp_path / "ens", "ens-v1", note="picked on a validation set")
    meta = json.loads((out / "triage.json").read_text())
    assert meta["method"] == "prompt-ensemble" and [m["version"] for m in meta["members"]] == ["p0", "p1", "p2"]
    assert meta["trainable_parameters"] == sum(json.loads((p / "triage.json").read_text())["trainable_parameters"]
                                               for p in paths)
    card = (out / "README.md").read_text()
    assert "prompt ensemble" in card and "picked on a validation set" in card and str(tmp_path) not in card
    loaded = load_tuned_model(out, base)
    assert len(loaded.members) == 3 and loaded.version == "ens-v1"
    config = json.loads((out / "ensemble.json").read_text())
    (out / "ensemble.json").write_text(json.dumps({**config, "members": [".", *config["members"][1:]]}))
    with pytest.raises(ArtifactError, match="not a directory under members/"):
        load_tuned_model(out, base)
    (out / "ensemble.json").write_text(json.dumps(config))
    other = make_tiny_base(tokenizer, seed=9, name="another-model")
    with pytest.raises(ArtifactError, match="was tuned on base model"):
        load_tuned_model(out, other)
    with pytest.raises(ArtifactError, match="exists"):
        assemble_prompt_ensemble(paths, out, "again")
    with pytest.raises(ArtifactError, match="at least two"):
        assemble_prompt_ensemble(paths[:1], tmp_path / "one", "one")
    with pytest.raises(ArtifactError, match="more than once"):
        assemble_prompt_ensemble([paths[0], paths[0], paths[1]], tmp_path / "twice", "twice")
    lora, _ = _tune(base, tiny_train_file, tmp_path / "lora", method="lora", learning_rate=0.005, epochs=1)
    with pytest.raises(ArtifactError, match="not a soft prompt"):
        assemble_prompt_ensemble([paths[0], lora, paths[1]], tmp_path / "with-lora", "with-lora")
    elsewhere, _ = _tune(tiny_base, tiny_train_file, tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match="base_model_sha256"):
        assemble_prompt_ensemble([paths[0], elsewhere], tmp_path / "mixed-bases", "mixed")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "one", "twice", "with", "mixed"))) == [], \
        "a refused assembly leaves nothing behind"


def test_triage_ensemble_command_writes_an_artifact_that_route_serves(tiny_env, tiny_model_dir, tiny_train_file, tmp_path):
    from router.cli import cli
    from router.modelio import load_base_model
    from router.settings import Settings

    base = load_base_model(Settings(data_dir=tmp_path / "d", base_model=str(tiny_model_dir)))
    members = [str(tune_tiny(base, tiny_train_file, tmp_path / f"m{i}", epochs=1)[0]) for i in range(3)]
    runner = CliRunner()
    made = runner.invoke(cli, ["ensemble", *members, "--out", str(tmp_path / "ens"), "--version", "ens-cli"])
    assert made.exit_code == 0, made.output
    routed = runner.invoke(cli, ["route", "--json", "--model", str(tmp_path / "ens"), "my parcel arrived soaked"])
    assert routed.exit_code == 0, routed.output
    answer = json.loads(routed.output)
    assert answer["model_version"] == "ens-cli" and answer["departments"]
    refused = runner.invoke(cli, ["ensemble", members[0], "--out", str(tmp_path / "solo"), "--version", "solo"])
    assert refused.exit_code == 1 and "at least two soft prompts" in refused.output


def test_on_a_seq2seq_base_each_prompt_keeps_its_own_rows(tiny_train_file, tmp_path, tokenizer):
    """A seq2seq batch puts one soft prompt in front of every row: mixed prompts must not share one."""
    from router.dataset import load_examples
    from router.settings import Settings
    from tests.test_seq2seq import make_tiny_t5
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.ensemble import assemble_prompt_ensemble
    from tuning.train import train

    t5 = make_tiny_t5(tokenizer)
    paths = []
    for i in range(3):
        config = TuningConfig(method="prompt", epochs=1, num_virtual_tokens=4, learning_rate=0.3, val_fraction=0.0,
                              batch_size=4, init="random", seed=11 * i + 2)
        result = train(t5, load_examples(tiny_train_file), config)
        paths.append(save_artifact(result, build_metadata(t5, config, result, tiny_train_file, f"s{i}"),
                                   tmp_path / f"s{i}"))
    out = assemble_prompt_ensemble(paths, tmp_path / "ens", "t5-ens")
    service = RouterService(Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file), base=t5, tuned_path=out)
    alone = [[r.departments for r in service.route_many(MORE_TEXTS, "tuned", model=str(p))] for p in paths]
    assert any(alone[0][i] != alone[1][i] for i in range(len(MORE_TEXTS))), "the prompts answer differently"
    voted = service.route_many(MORE_TEXTS, "tuned")
    assert [r.departments for r in voted] == [voted_departments([a[i] for a in alone]) for i in range(len(MORE_TEXTS))]
