"""Precedents shown by their departments alone (`--precedent-chars 0`): the same in training and serving, recorded
in the artifact and served that way, a third of the prompt. Real MiniLM, real Chroma, tiny random models."""

from __future__ import annotations

import json
import shutil

import pytest

from rag.grounding import ChromaGrounder, compose
from rag.ingest import ingest_policies
from rag.precedents import ingest_examples
from rag.training_context import TrainingContexts
from router.results import Passage
from tests.conftest import TINY_TRAIN
from tests.rag_helpers import small_corpus, store_settings
from tests.test_prompt_ensemble import tiny_prompts  # noqa: F401  (a fixture)
from tests.test_context_tuning import (  # noqa: F401  (fixtures used by name)
    encoder, examples, precedent_store, tune_with_context, write_jsonl)


def test_departments_only_precedents_show_labels_and_mark_corrections():
    found = [Passage("train:1", "Warehouse, Packaging", "Two chairs were missing from the box.", 0.8, "precedent"),
             Passage("corr:1", "Service, Marketing", "Loyalty points never credited.", 0.7, "precedent", corrected=True)]
    assert compose(None, found, 0).context == ("Similar past complaints:\nDepartments: Warehouse, Packaging\n"
                                               "Departments (corrected by a supervisor): Service, Marketing")
    full = compose(None, found).context
    assert "Two chairs were missing from the box." in full and "(corrected by a supervisor): Loyalty" in full
    assert compose(None, found, 12).context.startswith("Similar past complaints:\nComplaint: Two chairs...\n")


def test_training_and_serving_build_the_same_departments_only_context(tmp_path):
    settings = store_settings(tmp_path)
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN[:10]))
    held = examples([("My kettle died the second day, it will not even heat.", "Development")])
    _, tuned_view = TrainingContexts("precedents", 2, 3, precedent_chars=0).build(settings, examples(TINY_TRAIN[:10]),
                                                                                 held)
    served = ChromaGrounder(settings).ground_many([held[0].input], precedents=True, policy=False, precedents_k=3,
                                                  precedent_chars=0)
    assert tuned_view == [served[0].context]
    lines = tuned_view[0].splitlines()
    assert lines[0] == "Similar past complaints:" and len(lines) == 4
    assert all(line.startswith("Departments: ") for line in lines[1:])
    assert len(served[0].passages) == 3 and all(p.snippet for p in served[0].passages)  # still cited in full


def test_an_artifact_tuned_with_departments_only_is_served_that_way(tiny_base, tiny_train_file, tmp_path,
                                                                   precedent_store):
    from router.service import RouterService

    compact, seen = tune_with_context(tiny_base, tiny_train_file, tmp_path / "compact", precedent_store,
                                      precedent_chars=0)
    meta = json.loads((compact / "triage.json").read_text())
    assert meta["context"]["precedent_chars"] == 0 and meta["parameters"]["precedent_chars"] == 0
    assert all("Complaint" not in c for c in seen["train"])
    full = tmp_path / "full"  # the same artifact, recorded as tuned with full precedents (as artifacts before it)
    shutil.copytree(compact, full)
    meta["context"].pop("precedent_chars")
    (full / "triage.json").write_text(json.dumps(meta))

    text = "The toaster is dead, it never worked."
    grounder = ChromaGrounder(precedent_store)
    short = RouterService(precedent_store, base=tiny_base, grounder=grounder, tuned_path=compact).route(text)
    long = RouterService(precedent_store, base=tiny_base, grounder=grounder, tuned_path=full).route(text)
    assert short.rag and long.rag and [p.doc_id for p in short.passages] == [p.doc_id for p in long.passages]
    assert short.input_tokens < long.input_tokens * 0.75


def test_precedent_chars_needs_precedents():
    from tuning.config import TuningConfig

    with pytest.raises(ValueError, match="precedent_chars"):
        TuningConfig(method="late-prompt", precedent_chars=0)
    with pytest.raises(ValueError, match="precedent_chars"):
        TuningConfig(method="late-prompt", context="precedents", precedent_chars=-1)
    assert TuningConfig(method="lora", context="both", precedent_chars=0).precedent_chars == 0


def test_an_ensemble_refuses_members_that_show_precedents_differently(tiny_prompts, tmp_path):
    from router.artifact import ArtifactError
    from tuning.ensemble import assemble_prompt_ensemble

    _, paths = tiny_prompts
    copies = []
    for path, context in zip(paths[:3], [{"kind": "precedents", "precedents_k": 3},  # recorded before the option
                                          {"kind": "precedents", "precedents_k": 3, "precedent_chars": 160},
                                          {"kind": "precedents", "precedents_k": 3, "precedent_chars": 0}]):
        copy = tmp_path / f"ctx-{path.name}"
        shutil.copytree(path, copy)
        meta = json.loads((copy / "triage.json").read_text())
        (copy / "triage.json").write_text(json.dumps({**meta, "context": context}))
        copies.append(copy)
    assert assemble_prompt_ensemble(copies[:2], tmp_path / "same", "same").is_dir()  # 160 is the default form
    with pytest.raises(ArtifactError, match="another retrieved context"):
        assemble_prompt_ensemble([copies[0], copies[2]], tmp_path / "mixed", "mixed")
