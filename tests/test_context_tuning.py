"""Retrieval-augmented tuning: leave-out precedents, the recorded context served, fallback, batched retrieval.

Real MiniLM embeddings and real Chroma (in-memory for training, on disk for serving); tiny random models.
"""

from __future__ import annotations

import json
import logging

import pytest

from rag.grounding import ChromaGrounder
from rag.ingest import ingest_policies
from rag.precedents import ingest_examples
from rag.training_context import LeaveOutPrecedents, TrainingContexts, near_duplicate
from router.dataset import Example, load_examples
from router.departments import DEPARTMENTS
from tests.conftest import TINY_TRAIN
from tests.rag_helpers import small_corpus, store_settings


@pytest.fixture(scope="module")
def encoder():
    from rag.embeddings import load_encoder

    return load_encoder()


def examples(pairs) -> list[Example]:
    return [Example(text, [d.strip() for d in label.split(",")], line) for line, (text, label) in enumerate(pairs, 1)]


def write_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in pairs))
    return path


def test_leave_out_never_returns_the_example_or_its_duplicates(encoder):
    text = "The blender stopped working after two days."
    pool = examples([
        (text, "Development"),
        ("  the BLENDER stopped working after two   days. ", "Development"),  # normalized duplicate
        ("The blender stopped working after only two days!", "Development, Service"),  # near-duplicate
        *TINY_TRAIN[1:],
    ])
    index = LeaveOutPrecedents(pool, encoder.embed)
    try:
        (found,) = index.search_many([text], 3)
    finally:
        index.close()
    assert len(found) == 3
    assert all(not near_duplicate(text, p.snippet) for p in found)
    assert "blender" not in " ".join(p.snippet.lower() for p in found)
    assert found[0].snippet == "My toaster is dead out of the box."  # the nearest complaint that is not a copy


def test_training_and_serving_build_the_same_prompt_context(tmp_path, encoder):
    """A complaint outside the store gets from the grounder exactly the context a tune gave its validation example."""
    settings = store_settings(tmp_path)
    train = examples(TINY_TRAIN[:10])
    held = examples([("My kettle died the second day, it will not even heat.", "Development"),
                     ("Two of the six chairs were missing from the box.", "Warehouse, Packaging")])
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN[:10]))
    _, tuned_view = TrainingContexts("both", 2, 3).build(settings, train, held)
    served = ChromaGrounder(settings).ground_many([ex.input for ex in held], policy=True, precedents=True,
                                                  policy_k=2, precedents_k=3)
    assert tuned_view == [g.context for g in served]
    assert tuned_view[1].startswith("Policy:\n- ") and "Similar past complaints:\nComplaint: " in tuned_view[1]


def test_batched_grounding_embeds_once_and_equals_one_at_a_time(tmp_path, encoder, monkeypatch):
    settings = store_settings(tmp_path)
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN))
    grounder = ChromaGrounder(settings)
    texts = ["The lamp came dented in a crushed box.", "Only two of three chairs arrived.", "Rude agent on the phone.",
             "The catalog shows a blue model you do not sell."]
    single = [grounder.ground(t, policy=True, precedents=True) for t in texts]
    calls = []
    real = type(encoder).embed
    monkeypatch.setattr(type(encoder), "embed", lambda self, batch: calls.append(len(batch)) or real(self, batch))
    batched = grounder.ground_many(texts, policy=True, precedents=True)
    assert calls == [4]  # one embedding call for the whole batch, reused by both collections' queries
    assert [g.context for g in batched] == [g.context for g in single]
    assert [[p.doc_id for p in g.passages] for g in batched] == [[p.doc_id for p in g.passages] for g in single]


def test_a_batch_too_big_for_one_chroma_query_is_split_but_embedded_once(tmp_path, encoder, monkeypatch):
    """Chroma's SQLite takes 32766 variables a statement: a tune retrieving for 2308 examples at once failed."""
    import chromadb.api.models.Collection as collection_module

    import rag.store

    settings = store_settings(tmp_path)
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN))
    texts = ["The lamp came dented in a crushed box.", "Only two of three chairs arrived.", "Rude agent on the phone.",
             "The catalog shows a blue model you do not sell.", "My kettle is dead.", "On hold for an hour."]
    whole = ChromaGrounder(settings).ground_many(texts, policy=True, precedents=True)
    index = LeaveOutPrecedents(examples(TINY_TRAIN), encoder.embed)
    unsplit = index.search_many(texts, 3)
    embeds, queries = [], []
    real_embed, real_query = type(encoder).embed, collection_module.Collection.query
    monkeypatch.setattr(type(encoder), "embed", lambda self, batch: embeds.append(len(batch)) or real_embed(self, batch))
    monkeypatch.setattr(collection_module.Collection, "query",
                        lambda self, **kw: queries.append(len(kw["query_embeddings"])) or real_query(self, **kw))
    monkeypatch.setattr(rag.store, "QUERY_VARIABLES", 7)  # a text or two per query
    split = ChromaGrounder(settings).ground_many(texts, policy=True, precedents=True)
    assert embeds == [6]  # still one embedding call for the batch
    assert len(queries) > 2 and sum(queries) == 12 and max(queries) <= 2  # but several queries
    assert [g.context for g in split] == [g.context for g in whole]
    queries.clear()
    try:
        assert index.search_many(texts, 3) == unsplit
    finally:
        index.close()
    assert len(queries) >= 6


def tune_with_context(base, train_file, out, settings, context="precedents", simulated_corrections=0.0,
                      precedent_chars=160):
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    config = TuningConfig(method="lora", context=context, epochs=1, learning_rate=0.005, val_fraction=0.0, batch_size=4,
                          simulated_corrections=simulated_corrections, precedent_chars=precedent_chars)
    contexts = TrainingContexts(context, settings.rag_top_k, settings.precedents_k, simulated_corrections,
                                precedent_chars=precedent_chars)
    seen = {}

    def context_for(train_set, val_set, pool):
        built = contexts.build_for_tune(settings, train_set, val_set, pool)
        seen["train"], seen["val"], seen["train_set"] = built.train, built.val, built.train_set
        return built

    result = train(base, load_examples(train_file), config, context_for=context_for)
    meta = build_metadata(base, config, result, train_file, out.name, {"context": contexts.to_json()})
    return save_artifact(result, meta, out), seen


@pytest.fixture
def precedent_store(tmp_path, encoder, tiny_train_file):
    settings = store_settings(tmp_path, shots_file=tiny_train_file)
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, tiny_train_file)
    return settings


def test_a_context_tuned_artifact_is_served_with_its_recorded_context(tiny_base, tiny_train_file, tmp_path,
                                                                     precedent_store, caplog):
    from router.service import RouterService

    artifact, seen = tune_with_context(tiny_base, tiny_train_file, tmp_path / "ctx-lora", precedent_store)
    meta = json.loads((artifact / "triage.json").read_text())
    assert meta["context"]["kind"] == "precedents" and meta["parameters"]["context"] == "precedents"
    assert all(c.startswith("Similar past complaints:\n") for c in seen["train"])
    for (text, _), context in zip(TINY_TRAIN, seen["train"]):
        assert text not in context  # no example saw itself as a precedent

    service = RouterService(precedent_store, base=tiny_base, grounder=ChromaGrounder(precedent_store),
                            tuned_path=artifact)
    routing = service.route("The toaster is dead, it never worked.")  # nothing asked: the artifact's context
    assert routing.rag and routing.context_unavailable is None
    assert [p.kind for p in routing.passages] == ["precedent"] * 3
    assert set(routing.departments) <= set(DEPARTMENTS) and routing.departments
    with caplog.at_level(logging.WARNING):
        asked = service.route("The toaster is dead, it never worked.", rag=True)
    assert "tuned with context 'precedents'" in caplog.text and "policy passages" in caplog.text
    assert {p.kind for p in asked.passages} == {"policy", "precedent"}


def test_the_number_of_precedents_a_model_was_tuned_with_is_the_number_served(tiny_base, tiny_train_file, tmp_path,
                                                                              precedent_store):
    """TRIAGE_PRECEDENTS_K at tune time is recorded; serving that model retrieves as many, whatever the setting says."""
    from router.service import RouterService

    tuned_with_five = precedent_store.model_copy(update={"precedents_k": 5})
    artifact, seen = tune_with_context(tiny_base, tiny_train_file, tmp_path / "ctx-5", tuned_with_five)
    assert json.loads((artifact / "triage.json").read_text())["context"]["precedents_k"] == 5
    assert all(c.count("\nDepartments: ") == 5 for c in seen["train"])
    assert precedent_store.precedents_k == 3
    service = RouterService(precedent_store, base=tiny_base, grounder=ChromaGrounder(precedent_store),
                            tuned_path=artifact)
    routing = service.route("The toaster is dead, it never worked.")
    assert [p.kind for p in routing.passages] == ["precedent"] * 5


def test_a_model_tuned_without_context_warns_when_served_precedents(tiny_service, precedent_store, tiny_base, caplog):
    from router.service import RouterService

    service = RouterService(precedent_store, base=tiny_base, grounder=ChromaGrounder(precedent_store),
                            tuned_path=tiny_service.tuned_path())
    assert not service.route("The toaster is dead.").rag  # tuned without context: none retrieved
    with caplog.at_level(logging.WARNING):
        routing = service.route("The toaster is dead.", precedents=True)
    assert routing.rag and "tuned with no retrieved context" in caplog.text


def test_a_context_tuned_model_still_answers_when_the_store_is_gone(tiny_base, tiny_train_file, tmp_path,
                                                                   precedent_store):
    import shutil

    from router.service import RouterService

    artifact, _ = tune_with_context(tiny_base, tiny_train_file, tmp_path / "ctx-lora", precedent_store)
    shutil.rmtree(precedent_store.chroma_dir)
    service = RouterService(precedent_store, base=tiny_base, grounder=ChromaGrounder(precedent_store),
                            tuned_path=artifact)
    routed = service.route_many(["The toaster is dead.", "Two chairs missing."])
    for routing in routed:
        assert routing.departments and set(routing.departments) <= set(DEPARTMENTS)
        assert not routing.rag and "no retrieval store" in routing.context_unavailable


def test_a_lora_tune_can_start_from_an_adapter_and_train_on_a_sample(tiny_base, tiny_train_file, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    plain = TuningConfig(method="lora", epochs=1, learning_rate=0.005, val_fraction=0.0, batch_size=4)
    trained = train(tiny_base, load_examples(tiny_train_file), plain)
    first = save_artifact(trained, build_metadata(tiny_base, plain, trained, tiny_train_file, "first"), tmp_path / "first")
    start = load_file(first / "adapter_model.safetensors")
    config = TuningConfig(method="lora", init_adapter=str(first), epochs=1, learning_rate=1e-5, val_fraction=0.0,
                          batch_size=4, train_examples=5)
    result = train(tiny_base, load_examples(tiny_train_file), config)
    assert result.n_train == 5
    state = {name.replace(".default", ""): p for name, p in result.trained.model.named_parameters() if p.requires_grad}
    assert state and all(torch.allclose(state[name], start[name], atol=1e-3) for name in start)  # started there

    with pytest.raises(ValueError, match="only a LoRA tune"):
        TuningConfig(method="prompt", init_adapter=str(first))


def test_the_correction_scenario_reroutes_only_what_the_corrections_resemble(tiny_base, tiny_train_file, tmp_path,
                                                                            precedent_store):
    """Tiny model, hand-built store: saved corrections reach the prompts of the complaints like them, no others."""
    from rag.scenario import format_scenario, run_scenario

    artifact, _ = tune_with_context(tiny_base, tiny_train_file, tmp_path / "ctx-lora", precedent_store)
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    write_jsonl(scenario / "corrections.jsonl", [
        ("My loyalty points from last month's purchase were never credited.", "Service, Marketing"),
        ("The rewards points balance on my member account dropped to zero.", "Service, Marketing")])
    write_jsonl(scenario / "new_rule.jsonl", [
        ("Where are the reward points for my loyalty account? Not credited.", "Service, Marketing"),
        ("My member points vanished from my rewards balance.", "Service, Marketing")])
    held_out = write_jsonl(tmp_path / "held.jsonl", [("The kettle is dead out of the box.", "Development"),
                                                     ("Only two of the four chairs came.", "Warehouse, Packaging")])
    result = run_scenario(precedent_store, artifact, held_out_path=held_out, train_path=tiny_train_file,
                          scenario_dir=scenario, base=tiny_base)
    assert result.citing_corrections(result.before.new_rule_cited) == 0
    assert result.citing_corrections(result.after.new_rule_cited) == 2
    assert result.citing_corrections(result.after.held_out_cited) == 0
    assert result.before.held_out_cited == result.after.held_out_cited  # nothing else retrieved differently
    for routed in result.before.new_rule + result.after.new_rule + result.after.held_out:
        assert routed and set(routed) <= set(DEPARTMENTS)
    table = format_scenario(result, "held.jsonl")
    assert "new-rule complaints routed by the new rule" in table and "2 of 2 new-rule" in table
    assert ChromaGrounder(precedent_store).search_precedents("loyalty points not credited", 1)[0].title != \
        "Service, Marketing"  # the corrections went to the scratch store only


def test_a_tune_asked_for_context_without_retrieval_is_refused(tiny_base, tiny_train_file):
    from tuning.config import TuningConfig
    from tuning.train import train

    config = TuningConfig(method="lora", context="precedents", epochs=1, learning_rate=0.005, val_fraction=0.0)
    with pytest.raises(ValueError, match="no retrieval to build it"):
        train(tiny_base, load_examples(tiny_train_file), config)
