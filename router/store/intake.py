"""Idempotent intake, the storage side: replays of earlier requests, known external_ids, and storing a routed
request all together (router.application.intake validates and routes between these calls)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from router.db.models import IdempotencyRecord, Ticket, TicketPublic
from router.results import Routing
from router.store.errors import Conflict
from router.store.tickets import new_ticket, ticket_public

STORED_STATUS = 201  # what an idempotency record says the original request answered (always "created")


@dataclass
class IntakeResult:
    """What an intake call answers: the stored body, its tickets, and whether it was a replay."""

    body: Any
    tickets: list[TicketPublic]
    replayed: bool = False  # True when an earlier identical request's result was returned


@dataclass
class IntakeItem:
    """One validated complaint of an intake request."""

    text: str
    external_id: str | None
    source: str
    same_as: int | None = None  # index of an identical earlier item in the batch


def request_hash(kind: str, payload: Any) -> str:
    """A stable hash of a request body (key order and whitespace do not matter)."""
    canonical_json = json.dumps({"kind": kind, "body": payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def find_replay(session: Session, key: str | None, digest: str) -> IntakeResult | None:
    """The stored result of an earlier request with this key and body; Conflict for the key with another body."""
    if key is None:
        return None
    record = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.key == key)).first()
    if record is None:
        return None
    if record.request_hash != digest:
        raise Conflict("this Idempotency-Key was already used with a different request body; "
                       "use a new key for a new request", "Idempotency-Key")
    body = record.response
    tickets = body["tickets"] if isinstance(body, dict) and "tickets" in body else [body]
    return IntakeResult(body, [TicketPublic.model_validate(t) for t in tickets], replayed=True)


def find_existing(session: Session, items: list[IntakeItem], batch: bool) -> dict[int, TicketPublic]:
    """Items whose external_id is already a ticket (by index); Conflict when that ticket has other text."""
    ids = sorted({it.external_id for it in items if it.external_id is not None})
    if not ids:
        return {}
    rows = {t.external_id: t for t in session.exec(select(Ticket).where(col(Ticket.external_id).in_(ids))).all()}
    found: dict[int, TicketPublic] = {}
    for i, item in enumerate(items):
        row = rows.get(item.external_id) if item.external_id is not None else None
        if row is None:
            continue
        if row.text != item.text:
            where = f"tickets[{i}]." if batch else ""
            raise Conflict(f"external_id {item.external_id!r} is already ticket {row.id} with different text; "
                           "an external_id names one complaint", f"{where}external_id")
        found[i] = ticket_public(row)
    return found


def save_intake(session: Session, clean: list[IntakeItem], existing: dict[int, TicketPublic],
                routed: dict[int, Routing], batch: bool, key: str | None, digest: str) -> IntakeResult:
    """Store the new tickets and the idempotency record in one transaction (IntegrityError when a concurrent
    request stored the same external_id or key first: nothing is written, look again)."""
    rows: dict[int, Ticket] = {}
    for i, item in enumerate(clean):
        if i not in existing and item.same_as is None:
            rows[i] = new_ticket(item.text, routed[i], item.external_id, item.source)
            session.add(rows[i])
    session.flush()
    public: list[TicketPublic] = []
    for i, item in enumerate(clean):
        first = item.same_as if item.same_as is not None else i
        public.append(existing[first] if first in existing else ticket_public(rows[first]))
    tickets_json = [p.model_dump(mode="json") for p in public]
    body: Any = {"tickets": tickets_json} if batch else tickets_json[0]
    if key is not None:
        session.add(IdempotencyRecord(key=key, request_hash=digest, response=body, status_code=STORED_STATUS))
    session.commit()
    return IntakeResult(body, public, replayed=not rows)
