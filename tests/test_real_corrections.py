"""The shipped corrections model on the real embedded SmolLM2: a saved correction reroutes complaints like it.

Real model, real MiniLM embeddings, real Chroma on disk (a store of the policy corpus' five documents and the
first 300 training complaints, so the test stays short); no retrain anywhere.
"""

from __future__ import annotations

import json

import pytest

from router.departments import DEPARTMENTS
from router.settings import SHIPPED_ARTIFACTS, Settings
from tests.rag_helpers import small_corpus

pytestmark = pytest.mark.realmodel

CORRECTIONS_MODEL = SHIPPED_ARTIFACTS / "smollm2-complaints-corrections"
CORRECTIONS_SOFT_PROMPT = SHIPPED_ARTIFACTS / "smollm2-complaints-corrections-late-prompt"
ROOT = SHIPPED_ARTIFACTS.parent.parent


def scenario_lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "data" / "scenario" / name).read_text().splitlines()]


@pytest.mark.parametrize("model", [CORRECTIONS_MODEL, CORRECTIONS_SOFT_PROMPT], ids=["lora", "soft-prompt"])
def test_a_saved_correction_changes_the_routing_of_complaints_like_it_and_no_other(tmp_path, model):
    from rag.grounding import ChromaGrounder
    from rag.ingest import ingest_policies
    from rag.precedents import add_precedent, ingest_examples
    from router.service import RouterService

    train = tmp_path / "train.jsonl"
    train.write_text("".join((ROOT / "data" / "complaints.jsonl").read_text().splitlines(keepends=True)[:300]))
    settings = Settings(data_dir=tmp_path / "d", tuned_model=model, shots_file=train)
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, train)
    service = RouterService(settings, grounder=ChromaGrounder(settings))
    new_rule = [row["input"] for row in scenario_lines("new_rule.jsonl")[:4]]
    others = ["The blender stopped working after two days.", "Only 3 of the 4 chairs were in the delivery."]

    before = service.route_many(new_rule + others)
    assert all(r.rag and r.context_unavailable is None for r in before)  # the artifact asks for its precedents
    assert not any(r.departments == ["Service", "Marketing"] for r in before[:4])  # routed by the old rule
    for row in scenario_lines("corrections.jsonl")[:5]:
        add_precedent(settings, row["input"], row["output"], "ticket-7")
    after = service.route_many(new_rule + others)

    cited = [[p for p in r.passages if p.corrected] for r in after]
    assert all(cited[:4]) and not any(cited[4:])
    assert all(p.source == "ticket-7" for p in cited[0])
    assert sum(r.departments == ["Service", "Marketing"] for r in after[:4]) >= 3  # the new rule, no retrain
    assert [r.departments for r in after[4:]] == [r.departments for r in before[4:]]  # nothing else moved
    for routing in after:
        assert routing.departments and set(routing.departments) <= set(DEPARTMENTS)
