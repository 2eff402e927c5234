"""Retrieval over real Chroma (temp directory) with the real MiniLM embeddings."""

from __future__ import annotations

import math

import pytest

from rag.corpus import CorpusError, load_corpus
from rag.grounding import ChromaGrounder, build_grounder
from rag.ingest import ingest_policies
from router.retrieval import RetrievalUnavailable
from rag.store import POLICIES as POLICY_COLLECTION
from rag.store import collection, existing, open_client
from tests.rag_helpers import POLICIES, closed_port, small_corpus, store_settings, venv_script

SHEETS = "Where are the 2 extra sets of sheets that are supposed to come with my order?"


@pytest.fixture(scope="session")
def embeddings():
    """The embedding model, loaded once for the whole session (every later use hits the cache)."""
    from rag.embeddings import MiniLMEmbeddings, load_encoder

    load_encoder()
    return MiniLMEmbeddings()


@pytest.fixture
def corpus(tmp_path):
    return small_corpus(tmp_path / "policies")


@pytest.fixture
def settings(tmp_path, embeddings):
    return store_settings(tmp_path)


def stored_ids(settings) -> dict[str, dict]:
    return existing(collection(open_client(settings, create=False), POLICY_COLLECTION, create=False))


def test_embeddings_are_unit_length_and_semantic(embeddings):
    crushed, damaged, ad = embeddings.embed_documents(
        ["The box was crushed and the lamp dented", "My package arrived damaged", "I love your new TV commercial"])
    assert len(crushed) == 384
    assert math.isclose(sum(v * v for v in crushed), 1.0, rel_tol=1e-4)
    cosine = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert cosine(crushed, damaged) > cosine(crushed, ad) + 0.2
    assert embeddings.embed_query("My package arrived damaged") == pytest.approx(damaged, abs=1e-5)
    from rag.embeddings import MiniLM

    assert MiniLM.load() is MiniLM.load(), "one encoder per process"
    assert MiniLM.load().embed(("My package arrived damaged",))[0] == pytest.approx(damaged, abs=1e-5)


def test_shipped_corpus_has_a_document_for_every_rule_and_department():
    docs = load_corpus(POLICIES)
    rules = {r for d in docs for r in d.rule}
    assert rules == set(range(1, 17))
    assert len({d.doc_id for d in docs}) == len(docs)
    assert {d.doc_id for d in docs if d.doc_id.startswith("dept-")} == {
        "dept-planning", "dept-development", "dept-service", "dept-warehouse", "dept-l3", "dept-packaging",
        "dept-marketing"}
    ten = next(d for d in docs if d.rule == (10,))
    assert ten.departments == ("Warehouse", "Packaging") and "Warehouse, Packaging" in ten.summary


def test_reingesting_the_same_corpus_changes_nothing(settings, corpus):
    first = ingest_policies(settings, corpus)
    assert (first.added, first.updated, first.deleted) == (5, 0, 0)
    before = stored_ids(settings)
    assert len(before) == first.chunks > 5

    again = ingest_policies(settings, corpus)
    assert (again.added, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 5)
    assert again.chunks_written == 0 and again.chunks_deleted == 0
    assert "0 added, 0 updated, 0 deleted" in again.summary()
    assert stored_ids(settings) == before


def test_a_changed_document_replaces_its_old_chunks(settings, corpus):
    ingest_policies(settings, corpus)
    path = corpus / "rule-13.md"
    path.write_text(path.read_text().replace("## Typical complaints", "## Typical complaints\n\n"
                                             "- The giraffe-print kayak in the brochure does not exist.\n"))
    report = ingest_policies(settings, corpus)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 1, 0, 4)

    stored = stored_ids(settings)
    texts = [m["content"] for m in stored.values() if m["doc_id"] == "rule-13"]
    assert any("giraffe-print kayak" in t for t in texts)
    # every stored chunk of the document is from the new version: same count as a fresh split
    from rag.corpus import parse_document, split_document

    assert sorted(i for i, m in stored.items() if m["doc_id"] == "rule-13") == sorted(
        c.chunk_id for c in split_document(parse_document(path)))
    top = ChromaGrounder(settings).search_policy("giraffe print kayak brochure", 1)
    assert top[0].doc_id == "rule-13" and "giraffe" in top[0].snippet


def test_a_deleted_document_disappears(settings, corpus):
    ingest_policies(settings, corpus)
    (corpus / "rule-11.md").unlink()
    report = ingest_policies(settings, corpus)
    assert (report.added, report.deleted) == (0, 1)
    assert all(m["doc_id"] != "rule-11" for m in stored_ids(settings).values())
    found = ChromaGrounder(settings).search_policy("the lamp arrived dented, no assembly instructions", 5)
    assert "rule-11" not in [p.doc_id for p in found]


def test_an_empty_corpus_directory_is_a_clear_error(settings, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match=r"no policy documents \(\*\.md\)"):
        ingest_policies(settings, empty)
    assert not settings.chroma_dir.exists(), "nothing is written for a bad corpus"


def test_a_non_markdown_file_is_named_and_nothing_is_written(settings, corpus):
    ingest_policies(settings, corpus)
    before = stored_ids(settings)
    (corpus / "notes.txt").write_text("remember to add the returns policy")
    (corpus / "rule-10.md").write_text((corpus / "rule-10.md").read_text() + "\nchanged\n")
    with pytest.raises(CorpusError) as err:
        ingest_policies(settings, corpus)
    assert "notes.txt: not a Markdown document" in str(err.value)
    assert stored_ids(settings) == before


def test_a_document_without_an_id_names_file_and_line(settings, corpus):
    (corpus / "returns.md").write_text("---\ntitle: Returns\nrule: 99\n---\n# Returns\n\nReturns go to Service.\n")
    with pytest.raises(CorpusError) as err:
        ingest_policies(settings, corpus)
    message = str(err.value)
    assert "returns.md:1: front matter has no 'id'" in message
    assert "returns.md:3: rule must be a rule number 1-16" in message


def test_a_new_document_needs_no_code_change(settings, corpus):
    ingest_policies(settings, corpus)
    (corpus / "gift-cards.md").write_text(
        "---\nid: gift-cards\ntitle: Gift cards\ndepartments: [Service]\n---\n# Gift cards\n\n"
        "A gift card that was not accepted, or a gift card balance that is wrong, goes to Service.\n")
    report = ingest_policies(settings, corpus)
    assert (report.added, report.unchanged) == (1, 5)
    top = ChromaGrounder(settings).search_policy("my gift card balance shows zero", 1)[0]
    assert (top.doc_id, top.title) == ("gift-cards", "Gift cards")


def test_grounding_gives_a_short_policy_context_and_citations(settings, corpus):
    ingest_policies(settings, corpus)
    grounding = ChromaGrounder(settings).ground(SHEETS)
    lines = grounding.context.splitlines()
    assert lines[:2] == ["Policy:", "- Missing items or parts in a delivered order: Warehouse, Packaging"]
    assert len(lines) == 1 + settings.rag_top_k and len(grounding.context) < 600
    department_line = next(line for line in lines if line.startswith("- Warehouse department"))
    assert "Warehouse owns stock and fulfilment" in department_line, "documents without a rule show their summary"
    assert len(grounding.passages) == settings.rag_top_k
    assert grounding.passages[0].doc_id == "rule-10" and grounding.passages[0].kind == "policy"
    assert grounding.passages[0].score > grounding.passages[-1].score
    assert len({p.doc_id for p in grounding.passages}) == len(grounding.passages), "one citation per document"


def test_build_grounder_connects_lazily(tmp_path, monkeypatch):
    settings = store_settings(tmp_path)
    import rag.embeddings

    monkeypatch.setattr(rag.embeddings, "load_encoder", lambda *a: pytest.fail("model loaded without a query"))
    grounder = build_grounder(settings)
    assert grounder is not None
    assert not settings.chroma_dir.exists()


def test_a_missing_store_says_to_ingest_and_routing_goes_on(tiny_service, tmp_path, embeddings):
    grounder = ChromaGrounder(store_settings(tmp_path / "elsewhere"))
    with pytest.raises(RetrievalUnavailable, match="run `triage rag ingest` first"):
        grounder.ground(SHEETS)
    tiny_service.grounder = grounder
    result = tiny_service.route(SHEETS, rag=True)
    assert result.departments and result.passages == [] and result.rag is False


def test_routed_result_cites_policy_passages(tiny_service, settings, corpus):
    ingest_policies(settings, corpus)
    tiny_service.grounder = build_grounder(settings)
    result = tiny_service.route(SHEETS, rag=True)
    assert result.rag is True
    assert [p.doc_id for p in result.passages][0] == "rule-10"
    assert result.to_json()["passages"][0]["title"] == "Missing items or parts in a delivered order"
    plain = tiny_service.route(SHEETS)
    assert plain.passages == [] and plain.input_tokens < result.input_tokens


def test_an_unreachable_chroma_server_is_clear_and_routing_goes_on(tiny_service, tmp_path):
    port = closed_port()
    grounder = build_grounder(store_settings(tmp_path, chroma_host="127.0.0.1", chroma_port=port))
    with pytest.raises(RetrievalUnavailable) as err:
        grounder.ground(SHEETS)
    assert f"Chroma server http://127.0.0.1:{port}" in str(err.value)
    assert "chroma run --path DIR" in str(err.value)
    tiny_service.grounder = grounder
    result = tiny_service.route(SHEETS, rag=True)
    assert result.departments and result.passages == []


def test_an_ingest_by_another_process_is_seen_by_a_running_grounder(settings, corpus, tmp_path):
    import os
    import subprocess

    ingest_policies(settings, corpus)
    grounder = ChromaGrounder(settings)
    assert grounder.search_policy("my gift card balance shows zero", 1)[0].doc_id != "gift-cards"
    (corpus / "gift-cards.md").write_text(
        "---\nid: gift-cards\ntitle: Gift cards\n---\n# Gift cards\n\nA wrong gift card balance goes to Service.\n")
    env = dict(os.environ, TRIAGE_DATA_DIR=str(settings.data_dir))
    done = subprocess.run([venv_script("triage"), "rag", "ingest", str(corpus)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 added" in done.stdout
    assert grounder.search_policy("my gift card balance shows zero", 1)[0].doc_id == "gift-cards"


def test_a_chroma_server_store(tmp_path, corpus, embeddings):
    """The HTTP client against a real `chroma run` on loopback; its loss is a clear RetrievalUnavailable."""
    import subprocess
    import time

    import httpx

    port = closed_port()
    server = subprocess.Popen([venv_script("chroma"), "run", "--path", str(tmp_path / "server"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "chroma server did not start"
                time.sleep(0.2)
        settings = store_settings(tmp_path, chroma_host="127.0.0.1", chroma_port=port)
        assert ingest_policies(settings, corpus).added == 5
        assert ingest_policies(settings, corpus).unchanged == 5
        grounder = build_grounder(settings)
        assert grounder.ground(SHEETS).passages[0].doc_id == "rule-10"
        assert not settings.chroma_dir.exists(), "a server store writes nothing locally"
    finally:
        server.terminate()
        server.wait(timeout=30)
    with pytest.raises(RetrievalUnavailable, match=f"Chroma server http://127.0.0.1:{port}"):
        grounder.ground(SHEETS)


def test_building_a_grounder_imports_no_retrieval_stack(tmp_path):
    """Commands that never ground pay nothing: no Chroma, LangChain or torch import."""
    import subprocess
    import sys

    code = ("import sys; from router.settings import Settings; from rag.grounding import build_grounder; "
            f"assert build_grounder(Settings(data_dir={str(tmp_path)!r})) is not None; "
            "print(sorted(m for m in ('chromadb', 'langchain_core', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
