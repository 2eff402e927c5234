"""Connecting to Chroma: the on-disk store by default, a Chroma server when configured.

By default the store lives under ``<data_dir>/chroma`` (Chroma's PersistentClient).
To share one store between machines or processes, run a Chroma server and point
triage at it::

    chroma run --path /srv/triage-chroma --port 8000
    export TRIAGE_CHROMA_HOST=127.0.0.1 TRIAGE_CHROMA_PORT=8000
    triage rag ingest

Telemetry is always off, and every collection gets our own embedding function, so
Chroma never loads (or downloads) its default one.

An on-disk store is read by one process at a time as Chroma caches its index in
memory; every write here bumps a generation file beside it, and a long-running
grounder (the API server) reopens the store when that changes, so a
``triage rag ingest`` run from another process is seen by the next routing.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from rag.embeddings import MODEL_NAME, ChromaMiniLM
from router.retrieval import RetrievalUnavailable
from rag.names import CORRECTION, EXAMPLE, POLICIES, PRECEDENTS
from router import atomic

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from router.settings import Settings

INGEST_HINT = {POLICIES: "run `triage rag ingest` first", PRECEDENTS: "run `triage rag ingest-examples` first"}
WHAT = {POLICIES: "policy corpus", PRECEDENTS: "precedent store"}
GENERATION_FILE = "triage-generation"
# Queries x results in one Chroma query. Its SQLite allows 32766 variables per statement and a query binds about
# two per result (measured: 2308 queries x 11 results passed, 2308 x 21 failed), so half of the limit is kept.
QUERY_VARIABLES = 16000


def location(settings: Settings) -> str:
    if settings.chroma_host:
        return f"Chroma server http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.chroma_dir)


def connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the server went away or cannot be reached."""
    import httpx

    return (httpx.TransportError, ConnectionError, TimeoutError)


def open_client(settings: Settings, *, create: bool) -> ClientAPI:
    """A Chroma client; RetrievalUnavailable when the server is unreachable or (create=False) no store exists."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
        except (ValueError, *connection_errors()) as exc:
            raise RetrievalUnavailable(
                f"cannot reach the {location(settings)} ({exc}); start it with "
                f"`chroma run --path DIR --port {settings.chroma_port}` or unset TRIAGE_CHROMA_HOST"
            ) from exc
    path = settings.chroma_dir
    if not create and not (path / "chroma.sqlite3").is_file():
        raise RetrievalUnavailable(f"no retrieval store at {path}: {INGEST_HINT[POLICIES]}")
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def generation(settings: Settings) -> str | None:
    """The on-disk store's write generation (None for a server, or before any write)."""
    if settings.chroma_host:
        return None
    try:
        return (settings.chroma_dir / GENERATION_FILE).read_text()
    except FileNotFoundError:
        return None


def mark_changed(settings: Settings) -> None:
    """Tell readers in other processes that the on-disk store changed."""
    if not settings.chroma_host:
        atomic.write_text(settings.chroma_dir / GENERATION_FILE, f"{time.time_ns()}-{os.getpid()}")


def collection(client: ClientAPI, name: str, *, create: bool) -> Collection | None:
    """Our collection with our embedding function and cosine distance; None if absent and not created."""
    from chromadb.errors import NotFoundError

    function = ChromaMiniLM()
    if create:
        return client.get_or_create_collection(
            name, embedding_function=function, configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": MODEL_NAME},
        )
    try:
        return client.get_collection(name, embedding_function=function)
    except (NotFoundError, ValueError):
        return None


def existing(col: Collection) -> dict[str, dict]:
    """id -> metadata of everything stored in a collection."""
    found = col.get(include=["metadatas"])
    return {i: (m or {}) for i, m in zip(found["ids"], found["metadatas"] or [])}


def add_in_batches(col: Collection, ids: list[str], documents: list[str], metadatas: list[dict], size: int = 256) -> None:
    for start in range(0, len(ids), size):
        end = start + size
        col.upsert(ids=ids[start:end], documents=documents[start:end], metadatas=metadatas[start:end])


def store_status(settings: Settings) -> dict:
    """Counts of what is stored; 'exists' False when no on-disk store was created yet."""
    status: dict = {"location": location(settings), "exists": True, "policy_chunks": 0, "policy_documents": 0,
                    "precedents": 0, "examples": 0, "corrections": 0}
    try:
        client = open_client(settings, create=False)
    except RetrievalUnavailable:
        if settings.chroma_host:
            raise
        status["exists"] = False
        return status
    try:
        _count(client, status)
    finally:
        client.close()
    return status


def _count(client: ClientAPI, status: dict) -> None:
    policies = collection(client, POLICIES, create=False)
    if policies is not None:
        metas = existing(policies)
        status["policy_chunks"] = len(metas)
        status["policy_documents"] = len({m.get("doc_id") for m in metas.values()})
    precedents = collection(client, PRECEDENTS, create=False)
    if precedents is not None:
        kinds = [m.get("kind") for m in existing(precedents).values()]
        status["precedents"] = len(kinds)
        status["examples"] = kinds.count(EXAMPLE)
        status["corrections"] = kinds.count(CORRECTION)


def query_in_chunks(col: Collection, vectors: list, n: int, documents: bool = True) -> dict:
    """col.query for many query embeddings, split into as many queries as QUERY_VARIABLES allows; the results
    in the order of `vectors`, as one query would give them (without "documents" when `documents` is False)."""
    include = ["documents", "metadatas", "distances"] if documents else ["metadatas", "distances"]
    step = max(1, QUERY_VARIABLES // max(1, n))
    found: dict = {key: [] for key in ("ids", *include)}
    for start in range(0, len(vectors), step):
        part = col.query(query_embeddings=vectors[start:start + step], n_results=n, include=include)
        for key in found:
            found[key] += part[key]
    return found
