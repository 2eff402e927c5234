"""Where a job's files live: <data_dir>/jobs/<id>/ holds progress.json, worker.log, settings.json,
the cancel flag (and why, when the worker lost its owner), and the artifact while it is being built (moved into models_dir when registered)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @classmethod
    def of(cls, settings, job_id: int) -> "JobPaths":
        return cls(Path(settings.data_dir) / "jobs" / str(job_id))

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def cancel(self) -> Path:
        return self.root / "cancel"

    @property
    def orphaned(self) -> Path:
        """Written by the worker when the process that started it is gone: why it stopped."""
        return self.root / "orphaned"

    @property
    def data(self) -> Path:
        """The assembled training files before they join the artifact."""
        return self.root / "data"

    @property
    def staging(self) -> Path:
        """The artifact being built (save_artifact also uses staging.partial beside it)."""
        return self.root / "artifact"

    def clean_partial(self) -> None:
        """Remove what an unfinished job leaves behind (never progress.json or worker.log)."""
        for path in (self.staging, self.staging.with_name(self.staging.name + ".partial"), self.data):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.cancel, self.settings, self.orphaned):
            path.unlink(missing_ok=True)


def write_settings(settings, path: Path) -> None:
    """The settings a worker process runs with (readable by the owner only: it may hold a database password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(settings.model_dump(mode="json"), handle)
    tmp.replace(path)


def read_settings(path: Path):
    from router.settings import Settings

    return Settings(**json.loads(Path(path).read_text(encoding="utf-8")))
