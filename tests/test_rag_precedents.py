"""Labeled precedents and the retrieval evaluation, on real Chroma with the real embeddings."""

from __future__ import annotations

import json

import pytest

from rag.evaluate import retrieval_recall
from rag.grounding import ChromaGrounder
from rag.ingest import ingest_policies
from router.retrieval import RetrievalUnavailable
from rag.precedents import add_precedent, ingest_examples, precedent_id
from router.dataset import DataError, Example
from router.departments import LabelError
from tests.rag_helpers import small_corpus, store_settings

EXAMPLES = [
    {"input": "Only 4 of the 6 dining chairs came in the delivery.", "output": "Warehouse, Packaging", "rule": 10},
    {"input": "The lamp arrived dented inside a crushed box.", "output": "Packaging", "rule": 11},
    {"input": "The agent was rude and hung up on me.", "output": "Service", "rule": 1},
    {"input": "Your TV ad shows a red model that you do not sell.", "output": "Planning, Marketing", "rule": 13},
]


@pytest.fixture(scope="session")
def embeddings():
    from rag.embeddings import MiniLMEmbeddings, load_encoder

    load_encoder()
    return MiniLMEmbeddings()


@pytest.fixture
def settings(tmp_path, embeddings):
    return store_settings(tmp_path)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def examples_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", EXAMPLES)


def test_examples_are_indexed_once_and_reingesting_changes_nothing(settings, examples_file):
    first = ingest_examples(settings, examples_file)
    assert (first.added, first.updated, first.deleted, first.chunks) == (4, 0, 0, 4)
    again = ingest_examples(settings, examples_file)
    assert (again.added, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 4)

    found = ChromaGrounder(settings).search_precedents("two chairs were missing from my order", 1)
    assert found[0].kind == "precedent"
    assert found[0].snippet == EXAMPLES[0]["input"] and found[0].title == "Warehouse, Packaging"
    assert found[0].doc_id == precedent_id("  ONLY 4 of the 6 dining chairs came in the delivery. ")


def test_a_relabeled_or_removed_example_is_updated_or_deleted(settings, examples_file, tmp_path):
    ingest_examples(settings, examples_file)
    changed = [dict(EXAMPLES[0], output="Warehouse"), EXAMPLES[1], EXAMPLES[2]]
    report = ingest_examples(settings, write_jsonl(tmp_path / "v2.jsonl", changed))
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 1, 1, 2)
    grounder = ChromaGrounder(settings)
    assert grounder.search_precedents(EXAMPLES[0]["input"], 1)[0].title == "Warehouse"
    assert EXAMPLES[3]["input"] not in [p.snippet for p in grounder.search_precedents("TV ad red model", 3)]


def test_a_bad_examples_file_names_the_line_and_writes_nothing(settings, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + "\n" + '{"input": "x", "output": "Legal"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'output': unknown department 'Legal'"):
        ingest_examples(settings, bad)
    assert not settings.chroma_dir.exists()


def test_exclude_self_never_returns_the_complaint_itself(settings, examples_file):
    ingest_examples(settings, examples_file)
    grounder = ChromaGrounder(settings)
    query = "  the AGENT was rude and   hung up on me. "
    assert grounder.search_precedents(query, 2)[0].snippet == EXAMPLES[2]["input"]
    found = grounder.search_precedents(query, 2, exclude_self=True)
    assert len(found) == 2
    assert all(p.doc_id != precedent_id(query) for p in found)
    grounding = grounder.ground(query, policy=False, precedents=True, exclude_self=True)
    assert EXAMPLES[2]["input"] not in grounding.context
    assert grounding.context.startswith("Similar past complaints:\nComplaint: ")
    assert "\nDepartments: " in grounding.context


def test_a_correction_is_retrievable_at_once_and_survives_reingestion(settings, examples_file):
    ingest_examples(settings, examples_file)
    grounder = ChromaGrounder(settings)
    text = "The lamp arrived dented inside a crushed box."
    add_precedent(settings, text, ["Warehouse", "Packaging"], "ticket-17")
    assert grounder.search_precedents(text, 1)[0].title == "Warehouse, Packaging"
    new = "My smart bulbs keep forgetting their schedule after every power cut."
    pid = add_precedent(settings, new, "Development", "ticket-18")
    found = grounder.search_precedents("bulbs forget the schedule after a power cut", 1)[0]
    assert (found.doc_id, found.source) == (pid, "ticket-18")  # a correction links back to its ticket
    assert grounder.search_precedents("The agent hung up on me.", 1)[0].source == "train.jsonl:3"

    report = ingest_examples(settings, examples_file)
    assert (report.added, report.updated, report.deleted) == (0, 0, 0)
    assert grounder.search_precedents(text, 1)[0].title == "Warehouse, Packaging", "the correction wins"
    assert grounder.search_precedents(new, 1)[0].title == "Development", "corrections are not in the file but stay"


def test_add_precedent_refuses_bad_labels(settings):
    with pytest.raises(LabelError, match="unknown department 'Legal'"):
        add_precedent(settings, "text", "Legal", "ticket-1")
    with pytest.raises(ValueError, match="empty"):
        add_precedent(settings, "  ", ["Service"], "ticket-1")


def test_a_correction_without_any_store_is_refused_and_creates_nothing(settings):
    with pytest.raises(RetrievalUnavailable, match="run `triage rag ingest` first"):
        add_precedent(settings, "The agent was rude.", ["Service"], "ticket-3")
    assert not settings.chroma_dir.exists()


def test_a_correction_is_retrievable_when_only_the_policy_was_ingested(settings, tmp_path):
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    add_precedent(settings, "The agent was rude.", ["Service"], "ticket-3")
    assert ChromaGrounder(settings).search_precedents("rude agent", 1)[0].title == "Service"


def test_precedents_requested_before_any_were_ingested(settings, tmp_path):
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    with pytest.raises(RetrievalUnavailable, match="run `triage rag ingest-examples` first"):
        ChromaGrounder(settings).ground("anything", precedents=True)


def test_policy_and_precedents_together(settings, examples_file, tmp_path):
    ingest_policies(settings, small_corpus(tmp_path / "policies"))
    ingest_examples(settings, examples_file)
    grounding = ChromaGrounder(settings).ground("three of my six chairs never arrived", precedents=True)
    assert grounding.context.index("Policy:") < grounding.context.index("Similar past complaints:")
    kinds = [p.kind for p in grounding.passages]
    assert kinds == ["policy"] * 3 + ["precedent"] * 3


def test_retrieval_recall_counts_any_and_all(settings, tmp_path):
    ingest_policies(settings, small_corpus(tmp_path / "policies"))  # rules 2, 10, 11, 13 only
    examples = [
        Example("I ordered six glasses and the box had four.", ("Warehouse", "Packaging"), 1, (10,)),
        Example("The TV ad shows a 2-door fridge you do not sell.", ("Planning", "Marketing"), 2, (13,)),
        # rule 4 has no document in this corpus: it can never be a hit
        Example("The kettle is out of stock.", ("Warehouse",), 3, (4,)),
        # two problems: only rule 10 is retrievable, so 'any' hits and 'all' misses; 16 is left out
        Example("Two chairs were missing and the kettle is out of stock.", ("Warehouse", "Packaging"), 4, (4, 10, 16)),
        Example("no rule on this one", ("Service",), 5, ()),
    ]
    result = retrieval_recall(ChromaGrounder(settings), examples, 3)
    assert (result["n"], result["skipped"], result["k"]) == (4, 1, 3)
    assert result["recall_any"] == 0.75
    assert result["recall_all"] == 0.5
    assert result["per_rule"] == {4: 0.0, 10: 1.0, 13: 1.0}
    assert [m["line"] for m in result["misses"]] == [3]
