"""Grounding a routing: policy passages and labeled precedents retrieved from Chroma.

``build_grounder(settings)`` is cheap: nothing is imported from Chroma or LangChain,
nothing connects and no model loads until the first ``ground()`` call, so commands
that never use RAG pay nothing.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from router.retrieval import Grounding, RetrievalUnavailable
from rag.names import CORRECTION, POLICIES, PRECEDENTS
from router.results import Passage
from router.served_context import PRECEDENT_CHARS  # one past complaint in the prompt, by default

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from router.settings import Settings

SUMMARY_CHARS = 160  # one policy line in the prompt
SNIPPET_CHARS = 300  # a cited passage


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

    def _collection(self, name: str) -> tuple[Collection, int]:
        from rag.store import INGEST_HINT, WHAT, collection, connection_errors, location

        client = self._connect()
        try:
            col = collection(client, name, create=False)
            count = col.count() if col is not None else 0
        except connection_errors() as exc:
            raise RetrievalUnavailable(f"lost the {location(self.settings)}: {exc}") from exc
        if not count:
            raise RetrievalUnavailable(f"the {WHAT[name]} in {location(self.settings)} is empty: {INGEST_HINT[name]}")
        return col, count

    @staticmethod
    def _embed(texts: list[str]) -> list:
        """The texts' embeddings, in one call of the function the collections use (its encoder is loaded once)."""
        from rag.embeddings import ChromaMiniLM

        return list(ChromaMiniLM()(texts))

    def _query(self, name: str, texts: list[str], n: int, memo: dict | None = None,
               documents: bool = True) -> list[list[tuple[str, str, dict, float]]]:
        """For each text, the n nearest entries as (id, document, metadata, cosine similarity). `memo`: shared by
        the queries of one batch, so its texts are embedded once for every collection asked. `documents` False:
        the entries' documents are not fetched (given as "")."""
        from rag.store import connection_errors, location, query_in_chunks

        with self._lock:
            col, count = self._collection(name)
            vectors = (memo or {}).get("vectors")
            if vectors is None:
                vectors = self._embed(texts)
                if memo is not None:
                    memo["vectors"] = vectors
            try:
                found = query_in_chunks(col, vectors, min(n, count), documents)
            except connection_errors() as exc:
                raise RetrievalUnavailable(f"lost the {location(self.settings)}: {exc}") from exc
        every_doc = found.get("documents") or [[None] * len(ids) for ids in found["ids"]]
        results = []
        for ids, docs, metas, dists in zip(found["ids"], every_doc, found["metadatas"], found["distances"]):
            results.append([(i, d or "", m or {}, round(1.0 - float(x), 4)) for i, d, m, x in zip(ids, docs, metas, dists)])
        return results

    # -- retrieval ---------------------------------------------------------------
    def search_policy(self, text: str, k: int) -> list[Passage]:
        """The k most similar policy documents, each cited by its best chunk (score = cosine similarity)."""
        return self.search_policy_many([text], k)[0]

    def search_policy_many(self, texts: list[str], k: int) -> list[list[Passage]]:
        """search_policy for many texts in one batch (evaluation)."""
        return [[p for p, _ in hits] for hits in self.policy_hits_many(texts, k)]

    def policy_hits_many(self, texts: list[str], k: int, memo: dict | None = None) -> list[list[tuple[Passage, str]]]:
        """For each text, (passage, its prompt line) of the k best policy documents; one query for all. A chunk's
        text is read from its metadata, so its document is not fetched."""
        return [self._best_documents(rows, k) for rows in self._query(POLICIES, list(texts), k * 8, memo, False)]

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
        return self.search_precedents_many([text], k, exclude_self=exclude_self)[0]

    def search_precedents_many(self, texts: list[str], k: int, *, exclude_self: bool = False,
                               memo: dict | None = None) -> list[list[Passage]]:
        from rag.precedents import precedent_id

        out = []
        for text, rows in zip(texts, self._query(PRECEDENTS, list(texts), k + 1 if exclude_self else k, memo)):
            own = precedent_id(text)
            found = [Passage(pid, str(meta.get("departments", "")), document, score, "precedent",
                             str(meta["source_id"]) if meta.get("source_id") else None,
                             meta.get("kind") == CORRECTION)
                     for pid, document, meta, score in rows if not (exclude_self and pid == own)]
            out.append(found[:k])
        return out

    def rule_documents(self) -> dict[int, set[str]]:
        """Rule number -> ids of the documents that state it (from each document's front matter)."""
        with self._lock:
            found = self._collection(POLICIES)[0].get(include=["metadatas"])
        rules: dict[int, set[str]] = {}
        for meta in found["metadatas"] or []:
            for rule in filter(None, str((meta or {}).get("rule", "")).split(",")):
                rules.setdefault(int(rule), set()).add(str(meta["doc_id"]))
        return rules

    def ground(self, text: str, *, policy: bool = True, precedents: bool = False, exclude_self: bool = False,
               policy_k: int | None = None, precedents_k: int | None = None,
               precedent_chars: int | None = None) -> Grounding:
        return self.ground_many([text], policy=policy, precedents=precedents, exclude_self=exclude_self,
                                policy_k=policy_k, precedents_k=precedents_k, precedent_chars=precedent_chars)[0]

    def ground_many(self, texts: list[str], *, policy: bool = True, precedents: bool = False,
                    exclude_self: bool = False, policy_k: int | None = None,
                    precedents_k: int | None = None, precedent_chars: int | None = None) -> list[Grounding]:
        """ground() for many complaints: one embedding call for the whole batch, one query per collection;
        precedent_chars: how much of each precedent's complaint the prompt shows (None: PRECEDENT_CHARS, 0: none)."""
        texts = list(texts)
        policy_k = policy_k or self.settings.rag_top_k
        precedents_k = precedents_k or self.settings.precedents_k
        memo: dict = {}  # the batch's embeddings, computed by the first query and reused by the second
        hits = self.policy_hits_many(texts, policy_k, memo) if policy else [None] * len(texts)
        found = self.search_precedents_many(texts, precedents_k, exclude_self=exclude_self, memo=memo) if precedents \
            else [None] * len(texts)
        chars = PRECEDENT_CHARS if precedent_chars is None else precedent_chars
        return [compose(h, f, chars) for h, f in zip(hits, found)]


def policy_block(hits: list[tuple[Passage, str]]) -> str:
    """The policy passages as the prompt shows them: one line per document."""
    return "Policy:\n" + "\n".join(f"- {p.title}: {line}" for p, line in hits)


CORRECTED = "Complaint (corrected by a supervisor)"  # how the prompt marks a correction among the precedents
CORRECTED_LABEL = " (corrected by a supervisor)"  # the same, for precedents shown by their departments alone


def precedents_block(found: list[Passage], chars: int = PRECEDENT_CHARS) -> str:
    """Labeled precedents as the prompt shows them (training builds the same block: rag.training_context);
    a supervisor's correction is marked as one. Each shows its complaint cut to `chars` characters, or, with
    chars = 0, its departments alone (a third of the tokens; retrieval already judged the similarity)."""
    if chars == 0:
        lines = [f"Departments{CORRECTED_LABEL if p.corrected else ''}: {p.title}" for p in found]
    else:
        lines = [f"{CORRECTED if p.corrected else 'Complaint'}: {_cut(p.snippet, chars)}\nDepartments: {p.title}"
                 for p in found]
    return "Similar past complaints:\n" + "\n".join(lines)


def compose(policy_hits: list[tuple[Passage, str]] | None, precedents: list[Passage] | None,
            precedent_chars: int = PRECEDENT_CHARS) -> Grounding:
    """One complaint's context: policy lines first, then precedents (either may be absent)."""
    blocks, passages = [], []
    if policy_hits is not None:
        blocks.append(policy_block(policy_hits))
        passages += [p for p, _ in policy_hits]
    if precedents is not None:
        blocks.append(precedents_block(precedents, precedent_chars))
        passages += precedents
    return Grounding("\n\n".join(blocks), passages)


def build_grounder(settings: Settings) -> ChromaGrounder | None:
    """The grounder the service uses; None when Chroma is not installed."""
    import importlib.util

    if importlib.util.find_spec("chromadb") is None:
        return None
    return ChromaGrounder(settings)
