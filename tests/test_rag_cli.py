"""`triage rag ...` through click's CliRunner, on a real temporary Chroma store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from router.cli import cli
from tests.rag_helpers import closed_port, small_corpus


@pytest.fixture(scope="session")
def embeddings():
    from rag.embeddings import load_encoder

    return load_encoder()


@pytest.fixture
def run(embeddings):
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def corpus(tmp_path):
    return small_corpus(tmp_path / "policies")


def test_ingest_twice_then_search(run, corpus):
    first = run("rag", "ingest", str(corpus))
    assert first.exit_code == 0, first.output
    assert "5 added, 0 updated, 0 deleted" in first.output
    second = run("rag", "ingest", str(corpus))
    assert "0 added, 0 updated, 0 deleted, 5 unchanged" in second.output

    plain = run("rag", "search", "only", "four", "of", "six", "glasses", "arrived", "-k", "2")
    assert plain.exit_code == 0, plain.output
    first_line = plain.output.splitlines()[0]
    assert "rule-10" in first_line and "Missing items or parts in a delivered order" in first_line
    assert len([line for line in plain.output.splitlines() if not line.startswith(" ")]) == 2

    as_json = run("rag", "search", "the catalog photo shows a bigger rug", "--json", "-k", "3")
    results = json.loads(as_json.output)
    assert len(results) == 3
    assert results[0]["doc_id"] == "rule-13" and results[0]["kind"] == "policy"
    assert set(results[0]) == {"doc_id", "title", "snippet", "score", "kind", "source", "corrected"}
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_status_counts(run, corpus, tmp_path):
    before = run("rag", "status")
    assert before.exit_code == 0 and "not created" in before.output
    run("rag", "ingest", str(corpus))
    examples = tmp_path / "train.jsonl"
    examples.write_text(json.dumps({"input": "The agent hung up on me.", "output": "Service"}) + "\n")
    assert "1 added" in run("rag", "ingest-examples", str(examples)).output
    info = json.loads(run("rag", "status", "--json").output)
    assert info["exists"] and info["policy_documents"] == 5 and info["policy_chunks"] > 5
    assert (info["precedents"], info["examples"], info["corrections"]) == (1, 1, 0)


def test_search_before_ingest_says_what_to_do(run):
    result = run("rag", "search", "anything")
    assert result.exit_code == 1
    assert "run `triage rag ingest` first" in result.output


@pytest.mark.parametrize("case", ["empty", "not-markdown", "missing"])
def test_bad_corpus_directories_are_clear_errors(run, tmp_path, case):
    directory = tmp_path / "corpus"
    if case != "missing":
        directory.mkdir()
    if case == "not-markdown":
        (directory / "policy.pdf").write_bytes(b"%PDF-1.4")
    result = run("rag", "ingest", str(directory))
    assert result.exit_code == 1
    expected = {
        "empty": "no policy documents (*.md) in the directory",
        "not-markdown": "policy.pdf: not a Markdown document (expected *.md)",
        "missing": "no such policy corpus directory",
    }[case]
    assert f"triage: error: {directory}" in result.output and expected in result.output
    assert not (tmp_path / "triage-data" / "chroma").exists()


def test_unreachable_server_is_a_clear_error(run, corpus):
    port = closed_port()
    result = run("rag", "ingest", str(corpus), env={"TRIAGE_CHROMA_HOST": "127.0.0.1", "TRIAGE_CHROMA_PORT": str(port)})
    assert result.exit_code == 1
    assert f"cannot reach the Chroma server http://127.0.0.1:{port}" in result.output


def test_recall_command_on_a_labeled_file(run, corpus, tmp_path):
    run("rag", "ingest", str(corpus))
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in [
        {"input": "I ordered six glasses and the box had four.", "output": "Warehouse, Packaging", "rule": 10},
        {"input": "The kettle is back ordered.", "output": "Warehouse", "rule": 4},
    ]))
    result = run("rag", "eval", str(dev), "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert (numbers["n"], numbers["recall_any"], numbers["per_rule"]) == (2, 0.5, {"4": 0.0, "10": 1.0})


def test_rag_bench_prints_retrieval_cost_per_complaint(run, corpus, tmp_path):
    from tests.conftest import TINY_TRAIN

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    assert run("rag", "ingest", str(corpus)).exit_code == 0
    assert run("rag", "ingest-examples", str(train)).exit_code == 0
    result = run("rag", "bench", str(train), "--n", "6", "--batch-size", "4", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["policy"], r["precedents"]) for r in rows] == [(False, True), (True, False), (True, True)]
    for row in rows:
        assert row["n"] == 6 and row["single_ms"]["p50"] > 0 and row["batched_ms_per_complaint"] > 0
    table = run("rag", "bench", str(train), "--n", "6")
    assert "policy+precedents" in table.output and "batched/complaint" in table.output
