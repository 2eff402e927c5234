"""Shared pieces of the retraining tests: a migrated database, corrected tickets, a small dev file, waiting."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

from sqlmodel import Session

from router import store
from router.db import engine_for, upgrade
from router.departments import DEPARTMENTS
from router.results import Routing

TINY_PARAMS = {"method": "prompt", "epochs": 3, "num_virtual_tokens": 4, "learning_rate": 0.3, "batch_size": 4,
               "val_fraction": 0.0}


def routing(departments: Sequence[str], model_version: str = "tiny-prompt") -> Routing:
    confidence = {d: (0.9 if d in departments else 0.01) for d in DEPARTMENTS}
    return Routing(list(departments), confidence, "tuned", 10, 3, 5.0, 4, model_version, False)


def migrated(settings):
    engine = engine_for(settings)
    upgrade(engine)
    return engine


def correct(session: Session, text: str, departments: Sequence[str], *, routed: Sequence[str] = ("Service",),
            who: str = "boss", ticket_id: int | None = None) -> tuple[int, int]:
    """A ticket routed to `routed` and corrected to `departments`; returns (ticket id, correction id)."""
    if ticket_id is None:
        ticket_id = store.create_ticket_with_routing(session, text, routing(routed)).id
    correction = store.add_correction(session, ticket_id, list(departments), who=who)
    return ticket_id, correction.id


def write_jsonl(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in pairs))
    return path


def wait_for(condition: Callable[[], object], timeout: float = 60.0, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
