"""Saving a tuned soft prompt as a versioned artifact directory (PEFT format + metadata)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from router.artifact import METADATA
from router.dataset import file_sha256
from router.modelio import BaseModel
from tuning.config import TuningConfig
from tuning.train import TrainResult


def build_metadata(base: BaseModel, config: TuningConfig, result: TrainResult, data_path: Path, version: str,
                   extra: dict | None = None) -> dict:
    return {
        "format": 1,
        "version": version,
        "method": config.method,
        "base_model": base.model_id,
        "base_model_sha256": base.fingerprint,
        "prompt_format": "Complaint: {text}\\nDepartments: {labels}",
        "training_data": {"path": str(data_path), "sha256": file_sha256(data_path), "n_train": result.n_train,
                           "n_validation": result.n_val},
        "parameters": config.model_dump(),
        "loss_curve": {"train": result.epoch_losses, "validation": result.val_losses, "steps": result.step_losses},
        "validation_exact_set": result.val_exact,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds_per_epoch, 1),
        "cache_seconds": round(result.cache_seconds, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def save_artifact(result: TrainResult, metadata: dict, out: Path) -> Path:
    """Write to a temporary sibling, then rename: a crash never leaves half an artifact."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result.trained.save(tmp)
    (tmp / METADATA).write_text(json.dumps(metadata, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def update_metadata(path: Path, **fields) -> dict:
    meta_file = Path(path) / METADATA
    data = json.loads(meta_file.read_text())
    data.update(fields)
    meta_file.write_text(json.dumps(data, indent=1))
    return data
