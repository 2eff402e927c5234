"""Idempotent intake: routing new complaints exactly once per external_id or Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from router.db.models import IdempotencyRecord, Ticket, TicketCreate, TicketPublic
from router.results import Routing
from router.store.errors import Conflict, InvalidInput
from router.store.tickets import new_ticket, ticket_public

INTAKE_ATTEMPTS = 5


@dataclass
class IntakeResult:
    """What an intake call answers: the JSON body, its status, and whether it was a replay."""

    body: Any
    status_code: int
    tickets: list[TicketPublic]
    replayed: bool = False  # True when an earlier identical request's result was returned


@dataclass
class _Item:
    text: str
    external_id: str | None
    source: str
    same_as: int | None = None  # index of an identical earlier item in the batch


def _validated(items: Sequence[TicketCreate], max_chars: int, max_batch: int, batch: bool) -> list[_Item]:
    from router.service import validate_text

    if batch and len(items) > max_batch:
        raise InvalidInput(f"{len(items)} tickets in one batch; the limit is {max_batch}", "tickets")
    out: list[_Item] = []
    first_by_id: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"tickets[{i}]." if batch else ""
        clean = _Item(validate_text(item.text, max_chars, f"{where}text"), item.external_id, item.source)
        if item.external_id is not None:
            if item.external_id in first_by_id:
                j = first_by_id[item.external_id]
                if out[j].text != clean.text:
                    raise InvalidInput(f"external_id {item.external_id!r} is also tickets[{j}] with different text",
                                       f"{where}external_id")
                clean.same_as = j
            else:
                first_by_id[item.external_id] = i
        out.append(clean)
    return out


def request_hash(kind: str, payload: Any) -> str:
    """A stable hash of a request body (key order and whitespace do not matter)."""
    canonical_json = json.dumps({"kind": kind, "body": payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def _replay(session: Session, key: str | None, digest: str) -> IntakeResult | None:
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
    return IntakeResult(body, record.status_code, [TicketPublic.model_validate(t) for t in tickets], replayed=True)


def _existing(session: Session, items: list[_Item], batch: bool) -> dict[int, TicketPublic]:
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


def intake(session: Session, service, items: Sequence[TicketCreate], *, strategy: str | None = None,
           rag: bool = False, precedents: bool = False, batch: bool = False,
           idempotency_key: str | None = None) -> IntakeResult:
    """Route and store complaints, exactly once per external_id and per idempotency key.

    A repeat of an earlier request (same Idempotency-Key and body, or a known
    external_id with the same text) returns the stored result; the same key with
    another body, or a known external_id with other text, is a Conflict. Concurrent
    duplicates are settled by the database's unique constraints. A batch is stored
    all together or not at all. Status 201 for both fresh and replayed results.
    """
    items_in = list(items)
    settings = service.settings
    clean = _validated(items_in, settings.max_input_chars, settings.max_batch_tickets, batch)
    options = {"strategy": strategy, "rag": rag, "precedents": precedents}
    payload = {"tickets": [t.model_dump(mode="json") for t in items_in], **options} if batch else \
        {**items_in[0].model_dump(mode="json"), **options}
    digest = request_hash("batch" if batch else "ticket", payload)
    routed: dict[int, Routing] = {}
    for _attempt in range(INTAKE_ATTEMPTS):
        replay = _replay(session, idempotency_key, digest)
        existing = _existing(session, clean, batch) if replay is None else {}
        session.rollback()  # end the read transaction before the slow routing and the write
        if replay is not None:
            return replay
        todo = [i for i, it in enumerate(clean) if i not in existing and it.same_as is None and i not in routed]
        if todo:
            results = service.route_many([clean[i].text for i in todo], strategy, rag=rag, precedents=precedents)
            routed.update(zip(todo, results))
        try:
            return _store_intake(session, clean, existing, routed, batch, idempotency_key, digest)
        except IntegrityError:
            session.rollback()  # a concurrent request stored the same external_id or key first: look again
    raise Conflict("concurrent requests kept colliding on the same external_id or Idempotency-Key; retry")


def _store_intake(session: Session, clean: list[_Item], existing: dict[int, TicketPublic],
                  routed: dict[int, Routing], batch: bool, key: str | None, digest: str) -> IntakeResult:
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
        session.add(IdempotencyRecord(key=key, request_hash=digest, response=body, status_code=201))
    session.commit()
    return IntakeResult(body, 201, public, replayed=not rows)
