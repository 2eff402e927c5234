"""Assembling a prompt ensemble artifact from soft-prompt artifacts (router.ensemble says how it routes).

Each member is copied in whole (its files, its metadata and its model card), so the ensemble is one
self-contained directory; it is built beside its target and renamed into place, so a failed assembly
leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from router.artifact import METADATA, SOFT_PROMPT_METHODS, ArtifactError, read_metadata
from router.atomic import publish_dir
from router.ensemble import ENSEMBLE_CONFIG, PROMPT_ENSEMBLE, VOTE_RULE
from router.served_context import precedent_form
from tuning.model_card import write_model_card

MEMBERS = "members"


def _check_members(paths: Sequence[Path]) -> list[dict]:
    if len(paths) < 2:
        raise ArtifactError(f"a prompt ensemble needs at least two soft prompts, got {len(paths)}")
    metas = [read_metadata(p) for p in paths]
    for path, meta in zip(paths, metas):
        if meta.get("method") not in SOFT_PROMPT_METHODS:
            raise ArtifactError(f"{path}: method {meta.get('method')!r} is not a soft prompt "
                                f"({', '.join(SOFT_PROMPT_METHODS)}); a prompt ensemble's members share the one base model")
    first = metas[0]
    for path, meta in zip(paths[1:], metas[1:]):
        for key in ("base_model_sha256", "prompt_format"):
            if meta.get(key) != first.get(key):
                raise ArtifactError(f"{path}: {key} {meta.get(key)!r} differs from {paths[0]}'s {first.get(key)!r}; "
                                    "every member must be tuned on the same base model with the same prompt format")
        if _context_of(meta) != _context_of(first):
            raise ArtifactError(f"{path}: tuned with another retrieved context ({_context_of(meta)}) than "
                                f"{paths[0]} ({_context_of(first)})")
    versions = [m.get("version") or Path(p).name for p, m in zip(paths, metas)]
    twice = sorted({v for v in versions if versions.count(v) > 1})
    if twice:
        raise ArtifactError(f"the same prompt is listed more than once: {', '.join(twice)}")
    return metas


def _context_of(meta: dict) -> tuple:
    context = meta.get("context") or {}
    return context.get("kind", "none"), context.get("policy_k"), context.get("precedents_k"), precedent_form(context)


def _member_entry(name: str, meta: dict) -> dict:
    data = meta.get("training_data") or {}
    curve = meta.get("validation_exact_set") or []
    best = meta.get("best_epoch") or len(curve)
    return {
        "directory": name,
        "version": meta.get("version"),
        "method": meta.get("method"),
        "trainable_parameters": meta.get("trainable_parameters"),
        "train_seconds": meta.get("train_seconds"),
        "training_data": {"path": data.get("path"), "sha256": data.get("sha256"),
                          "more": [m.get("path") for m in data.get("more", [])]},
        "validation_exact_set": curve[best - 1] if curve else None,
        "parameters": meta.get("parameters"),
    }


def assemble_prompt_ensemble(members: Sequence[str | Path], out: str | Path, version: str,
                             note: str | None = None) -> Path:
    """Write the ensemble of the soft prompts at `members` (best first: the first one breaks ties) to `out`."""
    paths = [Path(p) for p in members]
    metas = _check_members(paths)
    out = Path(out)
    if out.exists():
        raise ArtifactError(f"{out} exists; choose another --out (an artifact is never overwritten in place)")
    if not version.strip():
        raise ArtifactError("the ensemble needs a version name")
    names = [f"{MEMBERS}/{_directory_name(meta.get('version') or path.name, i)}"
             for i, (path, meta) in enumerate(zip(paths, metas))]
    first = metas[0]
    metadata = {
        "format": 1,
        "version": version,
        "method": PROMPT_ENSEMBLE,
        "base_model": first.get("base_model"),
        "base_model_sha256": first.get("base_model_sha256"),
        "prompt_format": first.get("prompt_format"),
        "trainable_parameters": sum(m.get("trainable_parameters") or 0 for m in metas),
        "train_seconds": round(sum(m.get("train_seconds") or 0 for m in metas), 1),
        "vote": VOTE_RULE,
        "members": [_member_entry(n, m) for n, m in zip(names, metas)],
        **({"context": first["context"]} if first.get("context") else {}),
        **({"note": note} if note else {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    def build(tmp: Path) -> None:
        for path, name in zip(paths, names):
            target = tmp / name
            target.mkdir(parents=True)
            for file in path.iterdir():
                if file.is_file():
                    shutil.copy2(file, target / file.name)
        (tmp / ENSEMBLE_CONFIG).write_text(json.dumps({"method": PROMPT_ENSEMBLE, "members": names,
                                                       "vote": VOTE_RULE}, indent=1))
        (tmp / METADATA).write_text(json.dumps(metadata, indent=1))
        write_model_card(tmp)

    if not publish_dir(out, build, complete=lambda p: True):  # never replaces what another writer put there
        raise ArtifactError(f"{out} appeared while the ensemble was assembled; nothing was written")
    return out


def _directory_name(version: str, index: int) -> str:
    """A member's directory under members/: its version, reduced to characters safe in one path component."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", version).strip(".-")
    return name or f"member-{index + 1}"
