"""`triage rag ingest`: bring the policy collection in line with the corpus directory.

Idempotent: a chunk's id is ``<doc id>:<chunk index>:<content hash>``, so an
unchanged corpus writes nothing, a changed document's old chunks are replaced and
a deleted document's chunks disappear. The corpus is fully validated before
anything is written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import load_corpus, split_document
from rag.store import POLICIES, add_in_batches, collection, existing, mark_changed, open_client
from router.settings import Settings


@dataclass
class SyncReport:
    """What one ingestion changed, counted in documents (chunks for the totals)."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    chunks: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)

    def summary(self, noun: str = "document") -> str:
        return (f"{self.added} added, {self.updated} updated, {self.deleted} deleted, {self.unchanged} unchanged "
                f"({noun}s); {self.chunks} stored")


def default_policies_dir(settings: Settings) -> Path:
    return settings.resolved_policies_dir


def ingest_policies(settings: Settings, directory: Path | None = None) -> SyncReport:
    """Validate the corpus, then add, replace and delete chunks so the store matches it."""
    docs = load_corpus(Path(directory) if directory else default_policies_dir(settings))
    wanted = {chunk.chunk_id: chunk for doc in docs for chunk in split_document(doc)}
    client = open_client(settings, create=True)
    try:
        return _sync(settings, collection(client, POLICIES, create=True), wanted)
    finally:
        client.close()


def _sync(settings: Settings, col, wanted: dict) -> SyncReport:
    stored = existing(col)

    old_by_doc: dict[str, set[str]] = defaultdict(set)
    for chunk_id, meta in stored.items():
        old_by_doc[str(meta.get("doc_id", chunk_id.split(":")[0]))].add(chunk_id)
    new_by_doc: dict[str, set[str]] = defaultdict(set)
    for chunk in wanted.values():
        new_by_doc[chunk.doc_id].add(chunk.chunk_id)

    report = SyncReport(chunks=len(wanted))
    for doc_id in set(old_by_doc) | set(new_by_doc):
        old, new = old_by_doc.get(doc_id, set()), new_by_doc.get(doc_id, set())
        if not old:
            report.added += 1
        elif not new:
            report.deleted += 1
        elif old != new:
            report.updated += 1
        else:
            report.unchanged += 1

    to_write = [wanted[i] for i in sorted(set(wanted) - set(stored))]
    to_delete = sorted(set(stored) - set(wanted))
    # New chunks first, then old ones away: an interrupted run leaves a superset, which the next run repairs.
    if to_write:
        add_in_batches(col, [c.chunk_id for c in to_write], [c.text for c in to_write], [c.metadata for c in to_write])
    if to_delete:
        col.delete(ids=to_delete)
    if to_write or to_delete:
        mark_changed(settings)
    report.chunks_written, report.chunks_deleted = len(to_write), len(to_delete)
    return report
