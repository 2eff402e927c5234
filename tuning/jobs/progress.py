"""A job's live progress: a small JSON file the worker rewrites atomically and readers load whole."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MIN_INTERVAL_S = 0.5  # at most two rewrites a second during training (each epoch end is always written)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ProgressFile:
    """What the worker is doing now, with the loss curve so far."""

    def __init__(self, path: Path, min_interval: float = MIN_INTERVAL_S):
        self.path = Path(path)
        self.min_interval = min_interval
        self.data: dict[str, Any] = {"phase": "queued", "loss_curve": [], "epochs_done": []}
        self._written = 0.0

    def update(self, force: bool = True, **fields: Any) -> None:
        self.data.update({k: _finite(v) for k, v in fields.items()})
        now = time.monotonic()
        if force or now - self._written >= self.min_interval:
            self.write()
            self._written = now

    def phase(self, name: str, **fields: Any) -> None:
        self.update(phase=name, **fields)

    def on_train(self, p) -> None:
        """tuning.train's on_progress callback."""
        if p.stage != "train":  # before the first step: examples done, not updates (no loss yet)
            self.update(False, stage=p.stage, stage_done=p.step, stage_total=p.steps_total,
                        elapsed_s=round(p.elapsed_s, 1), eta_s=round(p.eta_s, 1))
            return
        self.data["stage"] = "train"
        if p.epoch_end:
            self.data["epochs_done"].append({"epoch": p.epoch, "loss": _finite(p.loss), "val_loss": _finite(p.val_loss)})
            self.update(epoch=p.epoch, epochs=p.epochs, elapsed_s=round(p.elapsed_s, 1), eta_s=round(p.eta_s, 1))
            return
        self.data["loss_curve"].append([p.step, round(p.loss, 5)])
        self.update(False, epoch=p.epoch, epochs=p.epochs, step=p.step, steps_total=p.steps_total,
                    loss=round(p.loss, 5), lr=p.lr, elapsed_s=round(p.elapsed_s, 1), eta_s=round(p.eta_s, 1))

    def write(self) -> None:
        self.data["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


STAGES = {"cache": "running the frozen layers below the prompt once", "teacher": "the teacher reads each example once"}


def stage_line(progress: dict[str, Any]) -> str | None:
    """'the teacher reads each example once 640/6307 · ETA 80s' while training has not reached its first step."""
    stage = progress.get("stage")
    if stage not in STAGES:
        return None
    return (f"{STAGES[stage]} {progress.get('stage_done', 0)}/{progress.get('stage_total', '?')}"
            f" · ETA {progress.get('eta_s') or 0:.0f}s")


def read_progress(path: Path) -> dict[str, Any]:
    """The last progress written ({} before the worker wrote any)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
