"""Saving a tuned model as a versioned artifact directory: the method's own files, triage.json and a model card.

A late prompt writes `soft_prompt.safetensors` + `soft_prompt.json`; PEFT methods write PEFT's format
(`adapter_config.json` + `adapter_model.safetensors`). No absolute path of the machine that made it is kept.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from router.artifact import METADATA, ArtifactError, read_metadata
from router.dataset import file_sha256
from router.modelio import BaseModel
from router.settings import project_root
from tuning.config import TuningConfig
from tuning.model_card import write_model_card
from tuning.train import TrainResult


def portable_path(path: Path) -> str:
    """A path as it reads on any machine: relative to the project when inside it, else the file name alone."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(project_root()))
    except ValueError:
        return resolved.name


def build_metadata(base: BaseModel, config: TuningConfig, result: TrainResult, data_path: Path, version: str,
                   extra: dict | None = None, more_data: dict[Path, int] | None = None) -> dict:
    """`more_data`: files of examples added to the training split only (path -> examples), recorded beside the file."""
    more = [{"path": portable_path(p), "sha256": file_sha256(p), "n": n} for p, n in (more_data or {}).items()]
    return {
        "format": 1,
        "version": version,
        "method": config.method,
        "base_model": base.model_id,
        "base_model_sha256": base.fingerprint,
        "prompt_format": _prompt_format(extra),
        "trainable_parameters": sum(p.numel() for p in result.trained.parameters()),
        "training_data": {"path": portable_path(data_path), "sha256": file_sha256(data_path), "n_train": result.n_train,
                           "n_validation": result.n_val,
                           "validation_sha256": result.validation_sha256, **({"more": more} if more else {})},
        "parameters": _portable_parameters(config),
        **({"started_from": origins} if (origins := _origins(config)) else {}),
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


# parameters that name another artifact a tune read: recorded with its version, stored as a portable path
ARTIFACT_PARAMETERS = ("init_adapter", "init_prompt", "teacher", "cross_teacher")


def _prompt_format(extra: dict | None) -> str:
    if ((extra or {}).get("context") or {}).get("kind", "none") != "none":
        return "{context}\\n\\nComplaint: {text}\\nDepartments: {labels}"
    return "Complaint: {text}\\nDepartments: {labels}"


def _origins(config: TuningConfig) -> dict:
    """The version of each artifact a tune read (starting prompt or adapters, teacher), as it was then: a path can later
    hold another version."""
    found = {}
    for name in ARTIFACT_PARAMETERS:
        path = getattr(config, name)
        if path:
            try:
                version = read_metadata(path).get("version")
            except ArtifactError:
                version = None
            found[name] = {"path": portable_path(Path(path)), "version": version}
    return found


def _portable_parameters(config: TuningConfig) -> dict:
    parameters = config.model_dump()
    for name in ARTIFACT_PARAMETERS:
        if parameters.get(name):
            parameters[name] = portable_path(Path(parameters[name]))
    return parameters


def save_artifact(result: TrainResult, metadata: dict, out: Path) -> Path:
    """Write to a temporary sibling, then rename: a crash never leaves half an artifact."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result.trained.save(tmp)
    _scrub_peft_config(tmp, metadata.get("base_model"))
    (tmp / METADATA).write_text(json.dumps(metadata, indent=1))
    write_model_card(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def update_metadata(path: Path, **fields) -> dict:
    meta_file = Path(path) / METADATA
    data = json.loads(meta_file.read_text())
    data.update(fields)
    meta_file.write_text(json.dumps(data, indent=1))
    write_model_card(path)
    return data


def _scrub_peft_config(directory: Path, model_id: str | None) -> None:
    """PEFT records the base model's local path (a cache directory of this machine): keep the model's id instead."""
    config_file = directory / "adapter_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = model_id
        config_file.write_text(json.dumps(config, indent=2))
