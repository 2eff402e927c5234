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
def three_prompts(tokenizer, tiny_train_file, tmp_path):
    base = _deep_tiny(tokenizer)
    paths = [_tune(base, tiny_train_file, tmp_path / f"p{i}", prompt_layer=1 + i % 2, seed=7 * i + 1, init="random",
                   epochs=1)[0] for i in range(3)]
    return base, paths


def test_the_ensemble_routes_as_the_vote_of_its_prompts_each_routed_alone(three_prompts, tiny_train_file, tmp_path):
    from router.settings import Settings
    from tuning.ensemble import assemble_prompt_ensemble

    base, paths = three_prompts
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
    from router.reference import generate_reference, load_reference

    plain = generate_reference(base, load_reference(base, out), MORE_TEXTS)
    assert [names for names, _ in plain] == [r.departments for r in ensemble], "the plain path (each member's " \
        "generate(), then the vote) gives the fast path's answers"
    one_by_one = [service.route(t, "tuned").departments for t in MORE_TEXTS]
    assert one_by_one == [r.departments for r in ensemble], "batched and alone agree"
    mixed = service.route_mixed(MORE_TEXTS, [None, str(paths[1])] * (len(MORE_TEXTS) // 2))
    for i, routing in enumerate(mixed):
        want = ensemble[i] if i % 2 == 0 else alone[1][i]
        assert (routing.departments, routing.model_version) == (want.departments, want.model_version)


def test_ensemble_artifact_round_trip_and_refusals(three_prompts, tiny_base, tiny_train_file, tokenizer, tmp_path):
    from tuning.ensemble import assemble_prompt_ensemble

    base, paths = three_prompts
    out = assemble_prompt_ensemble(paths, tmp_path / "ens", "ens-v1", note="picked on a validation set")
    meta = json.loads((out / "triage.json").read_text())
    assert meta["method"] == "prompt-ensemble" and [m["version"] for m in meta["members"]] == ["p0", "p1", "p2"]
    assert meta["trainable_parameters"] == sum(json.loads((p / "triage.json").read_text())["trainable_parameters"]
                                               for p in paths)
    card = (out / "README.md").read_text()
    assert "prompt ensemble" in card and "picked on a validation set" in card and str(tmp_path) not in card
    loaded = load_tuned_model(out, base)
    assert len(loaded.members) == 3 and loaded.version == "ens-v1"
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
