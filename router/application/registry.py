"""The model registry as the served model sees it: promote and roll back = commit, then switch what is served.

The artifact is loaded (and so checked) before anything is written; once the registry row is committed the
routing service switches to it, and the previous tuned model (with what the engine prepared for it) is
released. `sync` makes a process serve whatever the registry says is active (promotes made by another
replica, the CLI or another console reach every process this way).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from router import store
from router.artifact import ArtifactError, TunedModel, read_metadata
from router.db.models import ModelVersion
from router.service import RouterService

log = logging.getLogger(__name__)


class ModelRegistry:
    """Registered versions of one database, and which of them the routing service serves."""

    def __init__(self, database: Engine, service: RouterService, served_version: str | None = None):
        self.database, self.service = database, service
        self.served_version = served_version  # the registry version this process serves (None: not synced yet)
        self._lock = threading.Lock()

    def _session(self) -> Session:
        return Session(self.database, expire_on_commit=False)

    def versions(self) -> list[ModelVersion]:
        with self._session() as s:
            return store.list_model_versions(s)

    def active(self) -> ModelVersion | None:
        with self._session() as s:
            return store.active_model_version(s)

    def register(self, artifact_path: str | Path, metrics: dict | None = None) -> ModelVersion:
        with self._session() as s:
            return store.register_model_version(s, artifact_path, metrics=metrics)

    def _load(self, row: ModelVersion) -> TunedModel | None:
        """The version's tuned model, loaded on the served base; a process that has not loaded the base (the CLI)
        only checks the artifact's metadata, and loads it when it first routes with it."""
        try:
            if not self.service.loaded:
                read_metadata(row.artifact_path)
                return None
            return self.service.load_tuned(Path(row.artifact_path))
        except (ArtifactError, OSError) as exc:
            raise store.Conflict(f"model version {row.version!r} cannot be served: {exc}", "version") from exc

    def promote(self, version: str, *, who: str) -> ModelVersion:
        """Make `version` active and serve it; nothing changes when its artifact cannot be loaded."""
        return self._change(lambda s: store.get_model_version(s, version), lambda s: store.promote(s, version, who=who))

    def rollback(self, version: str, *, who: str) -> ModelVersion:
        """Retire the active `version`, re-activate the one before it and serve that; returns it."""
        return self._change(lambda s: store.rollback_target(s, version), lambda s: store.rollback(s, version, who=who))

    def _change(self, target, commit) -> ModelVersion:
        """Load the version `target(session)` names, `commit(session)` the change, then serve what it made active."""
        with self._lock, self._session() as s:
            loaded = self._load(target(s))
            row = commit(s)
            self._serve(row, loaded)
            return row

    def sync(self) -> str | None:
        """Serve the registry's active version if this process does not yet; returns the version switched to."""
        with self._lock:
            active = self.active()
            if active is None or active.version == self.served_version:
                return None
            log.info("serving model version %s (%s)", active.version, active.artifact_path)
            self._serve(active, self._load(active))
            return active.version

    def _serve(self, row: ModelVersion, loaded: TunedModel | None) -> None:
        if loaded is None:
            self.service.serve_later(Path(row.artifact_path))
        else:
            self.service.use_tuned(Path(row.artifact_path), loaded)
        self.served_version = row.version
