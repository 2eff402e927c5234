"""What the store refuses (StoreError and its kinds), and two helpers every part of it uses."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session


class StoreError(ValueError):
    """A request the store refuses; `field` names the offending input when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(StoreError):
    """A value that is not acceptable (unknown department, bad cursor, ...)."""


class NotFound(StoreError):
    """No such ticket, model version or key."""


class Conflict(StoreError):
    """The request contradicts what is stored (reused idempotency key, reused external_id, ...)."""


def add_unique(session: Session, row, conflict: str, field: str):
    """Insert `row`; a unique-constraint violation rolls back and becomes Conflict(conflict, field)."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(conflict, field) from exc
    return row


def json_safe(value: Any) -> Any:
    """`value` with NaN/Infinity replaced by None: strict JSON, which PostgreSQL requires."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
