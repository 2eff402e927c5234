"""Labeled precedents: past complaints and their departments, retrievable by similarity.

Two kinds live in one collection: ``example`` (from a training file, replaced as a
whole by ``triage rag ingest-examples``) and ``correction`` (a supervisor's fix,
added one at a time by ``add_precedent`` and never overwritten by an example).
A precedent's id is a hash of its normalized text, so a complaint is stored once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rag.ingest import SyncReport
from rag.names import CORRECTION, EXAMPLE
from rag.store import PRECEDENTS, add_in_batches, collection, existing, mark_changed, open_client
from router.dataset import load_examples, normalize
from router.departments import LabelError, canonical, format_departments, parse_departments
from router.settings import Settings


def precedent_id(text: str) -> str:
    return "p-" + hashlib.sha256(normalize(text).encode()).hexdigest()[:24]


def default_examples_file(settings: Settings) -> Path:
    return settings.resolved_shots_file


def ingest_examples(settings: Settings, path: Path | None = None) -> SyncReport:
    """Make the stored examples exactly the file's (corrections are kept and win over an example)."""
    path = Path(path) if path else default_examples_file(settings)
    examples = load_examples(path, settings.max_input_chars)  # DataError with line numbers; nothing written
    wanted = {precedent_id(e.input): e for e in examples}
    client = open_client(settings, create=True)
    try:
        return _sync_examples(settings, collection(client, PRECEDENTS, create=True), wanted, path)
    finally:
        client.close()


def _sync_examples(settings: Settings, col, wanted: dict, path: Path) -> SyncReport:
    stored = existing(col)
    corrections = {i for i, m in stored.items() if m.get("kind") == CORRECTION}

    report = SyncReport()
    ids, documents, metadatas = [], [], []
    for pid, example in wanted.items():
        if pid in corrections:
            report.unchanged += 1
            continue
        meta = {"kind": EXAMPLE, "departments": example.output, "source_id": f"{path.name}:{example.line}"}
        old = stored.get(pid)
        if old is None:
            report.added += 1
        elif old.get("departments") != meta["departments"] or old.get("kind") != EXAMPLE:
            report.updated += 1
        else:
            report.unchanged += 1
            continue
        ids.append(pid)
        documents.append(example.input)
        metadatas.append(meta)
    to_delete = sorted(i for i, m in stored.items() if m.get("kind") != CORRECTION and i not in wanted)
    if ids:
        add_in_batches(col, ids, documents, metadatas)
    if to_delete:
        col.delete(ids=to_delete)
    if ids or to_delete:
        mark_changed(settings)
    report.deleted = len(to_delete)
    report.chunks_written, report.chunks_deleted = len(ids), len(to_delete)
    report.chunks = col.count()
    return report


def add_precedent(settings: Settings, text: str, departments, source_id: str) -> str:
    """Store a supervisor's correction; it is retrievable by the next grounding. Returns its id.

    departments: a list of names or a 'Warehouse, Packaging' string. Raises LabelError or ValueError
    for bad input, RetrievalUnavailable when no retrieval store was set up (`triage rag ingest` or
    `ingest-examples` creates it: a deployment without RAG never loads the embedding model here)
    or the Chroma server cannot be reached.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("precedent text is empty")
    names = parse_departments(departments) if isinstance(departments, str) else canonical(departments)
    if not names:
        raise LabelError("a precedent needs at least one department")
    client = open_client(settings, create=False)
    try:
        pid = precedent_id(text)
        collection(client, PRECEDENTS, create=True).upsert(
            ids=[pid], documents=[text.strip()],
            metadatas=[{"kind": CORRECTION, "departments": format_departments(names), "source_id": str(source_id)}])
    finally:
        client.close()
    mark_changed(settings)
    return pid
