"""Tuned models loaded side by side on one base model, named by directory or by version.

A soft prompt costs its keys/values only (well under a megabyte for the shipped shapes), so several stay
loaded at once and requests can name the one they want (`triage route --model V`, the API's `model`).
A LoRA adapter is a merged copy of the base model, so at most a few are kept (least recently used goes).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

from router.artifact import METADATA, TunedModel, load_tuned_model


class UnknownModel(LookupError):
    """A model name that is neither an artifact directory nor a known version."""


def resolve_artifact(ref: str | Path, search: Sequence[Path]) -> Path:
    """`ref` as an artifact directory: itself if it is one, else the directory of that version name."""
    path = Path(ref)
    if path.is_dir():
        return path
    name = str(ref)
    for root in search:
        if (Path(root) / name).is_dir():
            return Path(root) / name
        for child in sorted(Path(root).glob(f"*/{METADATA}")) if Path(root).is_dir() else []:
            try:
                if json.loads(child.read_text()).get("version") == name:
                    return child.parent
            except (OSError, json.JSONDecodeError):
                continue
    where = ", ".join(str(p) for p in search)
    raise UnknownModel(f"no tuned model {name!r}: not a directory, nor a version under {where}")


class TunedModels:
    """Loaded tuned models by artifact directory (soft prompts: many; merged LoRA copies: `max_copies`)."""

    def __init__(self, base: Callable[[], object], search: Sequence[Path], max_copies: int = 2):
        self._base, self.search, self.max_copies = base, list(search), max_copies
        self._loaded: OrderedDict[Path, TunedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: str | Path) -> TunedModel:
        path = resolve_artifact(ref, self.search).resolve()
        with self._lock:
            if path in self._loaded:
                self._loaded.move_to_end(path)
                return self._loaded[path]
        model = load_tuned_model(path, self._base())
        with self._lock:
            self._loaded[path] = model
            copies = [p for p, m in self._loaded.items() if m.model is not None]
            for old in copies[: max(0, len(copies) - self.max_copies)]:
                del self._loaded[old]
        return model

    def put(self, model: TunedModel) -> None:
        with self._lock:
            self._loaded[Path(model.path).resolve()] = model

    def loaded(self) -> list[TunedModel]:
        with self._lock:
            return list(self._loaded.values())
