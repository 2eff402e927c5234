"""Grounding a routing: policy passages and labeled precedents retrieved from Chroma.

``build_grounder(settings)`` is cheap: nothing is imported from Chroma or LangChain,
nothing connects and no model loads until the first ``ground()`` call, so commands
that never use RAG pay nothing.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from router.retrieval import Grounding, RetrievalUnavailable
from rag.names import POLICIES, PRECEDENTS
from router.results import Passage

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from router.settings import Settings

SUMMARY_CHARS = 160  # one policy line in the prompt
SNIPPET_CHARS = 300  # a cited passage
PRECEDENT_CHARS = 160  # one past complaint in the prompt


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "..."


def _prompt_line(meta: dict, snippet: str) -> str:
    """What a policy document says in the prompt, after its title.

    A rule document with departments: just the departments (the title says when, they say where:
    the shortest form a 135M model can use). Any other document: its summary, cut short.
    """
    if meta.get("rule") and meta.get("departments"):
        return str(meta["departments"])
    return _cut(str(meta.get("summary") or snippet), SUMMARY_CHARS)


class ChromaGrounder:
    """Retrieves from the policy and precedent collections; connects on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client = None
        self._generation: str | None = None
        self._lock = threading.RLock()  # one retrieval at a time: a reopen never pulls the store from under a query

    # -- connection --------------------------------------------------------------
    def _connect(self):
        """The client, reopened when another process wrote the on-disk store since it was opened."""
        from rag.store import generation, open_client

        current = generation(self.settings)
        if self._client is not None and current != self._generation:
            self._client.close()
            self._client = None
        if self._client is None:
            self._client = open_client(self.settings, create=False)
            self._generation = current
        return self._client

    def _collection(self, name: str) -> Collection:
        from rag.store import INGEST_HINT, WHAT, collection, connection_errors, location

        client = self._connect()
        try:
            col = collection(client, name, create=False)
            count = col.count() if col is not None else 0
        except connection_errors() as exc:
            raise RetrievalUnavailable(f"lost the {location(self.settings)}: {exc}") from exc
        if not count:
            raise RetrievalUnavailable(f"the {WHAT[name]} in {location(self.settings)} is empty: {INGEST_HINT[name]}")
        return col

    def _query(self, name: str, texts: list[str], n: int) -> list[list[tuple[str, str, dict, float]]]:
        """For each text, the n nearest entries as (id, document, metadata, cosine similarity)."""
        from rag.store import connection_errors, location

        with self._lock:
            col = self._collection(name)
            try:
                found = col.query(query_texts=texts, n_results=min(n, col.count()),
                                  include=["documents", "metadatas", "distances"])
            except connection_errors() as exc:
                raise RetrievalUnavailable(f"lost the {location(self.settings)}: {exc}") from exc
        results = []
        for ids, docs, metas, dists in zip(found["ids"], found["documents"], found["metadatas"], found["distances"]):
            results.append([(i, d or "", m or {}, round(1.0 - float(x), 4)) for i, d, m, x in zip(ids, docs, metas, dists)])
        return results

    # -- retrieval ---------------------------------------------------------------
    def search_policy(self, text: str, k: int) -> list[Passage]:
        """The k most similar policy documents, each cited by its best chunk (score = cosine similarity)."""
        return self.search_policy_many([text], k)[0]

    def search_policy_many(self, texts: list[str], k: int) -> list[list[Passage]]:
        """search_policy for many texts in one batch (evaluation)."""
        return [[p for p, _ in self._best_documents(rows, k)] for rows in self._query(POLICIES, texts, k * 8)]

    def _policy_hits(self, text: str, k: int) -> list[tuple[Passage, str]]:
        return self._best_documents(self._query(POLICIES, [text], k * 8)[0], k)

    @staticmethod
    def _best_documents(rows, k: int) -> list[tuple[Passage, str]]:
        """(passage, document summary) for the k best documents; chunks of one document count once."""
        best: dict[str, tuple[Passage, str]] = {}
        for chunk_id, _, meta, score in rows:
            doc_id = str(meta.get("doc_id", chunk_id.split(":")[0]))
            if doc_id not in best:
                snippet = _cut(str(meta.get("content", "")), SNIPPET_CHARS)
                passage = Passage(doc_id, str(meta.get("title", doc_id)), snippet, score, "policy")
                best[doc_id] = (passage, _prompt_line(meta, snippet))
        return sorted(best.values(), key=lambda hit: -hit[0].score)[:k]

    def search_precedents(self, text: str, k: int, *, exclude_self: bool = False) -> list[Passage]:
        """The k most similar labeled complaints; exclude_self drops the complaint itself."""
        from rag.precedents import precedent_id

        own = precedent_id(text)
        found = []
        for pid, document, meta, score in self._query(PRECEDENTS, [text], k + 1 if exclude_self else k)[0]:
            if exclude_self and pid == own:
                continue
            found.append(Passage(pid, str(meta.get("departments", "")), document, score, "precedent"))
        return found[:k]

    def rule_documents(self) -> dict[int, set[str]]:
        """Rule number -> ids of the documents that state it (from each document's front matter)."""
        with self._lock:
            found = self._collection(POLICIES).get(include=["metadatas"])
        rules: dict[int, set[str]] = {}
        for meta in found["metadatas"] or []:
            for rule in filter(None, str((meta or {}).get("rule", "")).split(",")):
                rules.setdefault(int(rule), set()).add(str(meta["doc_id"]))
        return rules

    def ground(self, text: str, *, policy: bool = True, precedents: bool = False, exclude_self: bool = False) -> Grounding:
        passages: list[Passage] = []
        blocks: list[str] = []
        if policy:
            hits = self._policy_hits(text, self.settings.rag_top_k)
            lines = [f"- {p.title}: {line}" for p, line in hits]
            blocks.append("Policy:\n" + "\n".join(lines))
            passages += [p for p, _ in hits]
        if precedents:
            found = self.search_precedents(text, self.settings.precedents_k, exclude_self=exclude_self)
            lines = [f"Complaint: {_cut(p.snippet, PRECEDENT_CHARS)}\nDepartments: {p.title}" for p in found]
            blocks.append("Similar past complaints:\n" + "\n".join(lines))
            passages += found
        return Grounding("\n\n".join(blocks), passages)


def build_grounder(settings: Settings) -> ChromaGrounder | None:
    """The grounder the service uses; None when Chroma is not installed."""
    import importlib.util

    if importlib.util.find_spec("chromadb") is None:
        return None
    return ChromaGrounder(settings)
