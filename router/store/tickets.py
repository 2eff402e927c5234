"""Tickets and their routings: create, re-route, read, list (newest first, by cursor)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy import String, cast
from sqlmodel import Session, col, select

from router.db.models import MAX_ROW_ID, RoutingRecord, Ticket, TicketPublic, TicketsPublic, to_naive_utc
from router.departments import DEPARTMENTS
from router.results import Routing
from router.store.errors import InvalidInput, NotFound, add_unique, json_safe

MAX_PAGE = 200


def ticket_public(ticket: Ticket) -> TicketPublic:
    return TicketPublic.model_validate(ticket)


def _min_confidence(routing: Routing) -> float | None:
    values = [routing.confidence.get(name, 0.0) for name in routing.departments]
    return round(min(values), 4) if values else None


def _routing_record(routing: Routing) -> RoutingRecord:
    data = routing.to_json()
    return RoutingRecord(
        strategy=routing.strategy, model_version=routing.model_version, departments=list(routing.departments),
        confidence=json_safe(dict(routing.confidence)), input_tokens=routing.input_tokens,
        generated_tokens=routing.generated_tokens, latency_ms=data["latency_ms"], passages=json_safe(data["passages"]),
        needs_review=routing.needs_review, rag=routing.rag,
    )


def new_ticket(text: str, routing: Routing, external_id: str | None, source: str) -> Ticket:
    return Ticket(
        text=text, external_id=external_id, source=source, departments=list(routing.departments),
        needs_review=routing.needs_review, confidence=_min_confidence(routing), routings=[_routing_record(routing)],
    )


def create_ticket_with_routing(session: Session, text: str, routing: Routing, *, external_id: str | None = None,
                               source: str = "console") -> TicketPublic:
    """Store a complaint and the routing it already got (no idempotency; see `intake` for that)."""
    row = add_unique(session, new_ticket(text.strip(), routing, external_id, source),
                     f"external_id {external_id!r} is already used by another ticket", "external_id")
    return ticket_public(row)


def add_routing(session: Session, ticket_id: int, routing: Routing) -> TicketPublic:
    """Record another routing of a stored ticket (e.g. a re-route by a new model version)."""
    ticket = ticket_row(session, ticket_id)
    ticket.routings.append(_routing_record(routing))
    if not ticket.corrections:
        ticket.departments, ticket.needs_review = list(routing.departments), routing.needs_review
        ticket.confidence = _min_confidence(routing)
    session.add(ticket)
    session.commit()
    return ticket_public(ticket)


def ticket_row(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id) if 1 <= ticket_id <= MAX_ROW_ID else None  # no driver OverflowError
    if ticket is None:
        raise NotFound(f"no ticket {ticket_id}", "ticket_id")
    return ticket


def get_ticket(session: Session, ticket_id: int) -> TicketPublic:
    """One ticket with every routing and correction; NotFound if there is none."""
    return ticket_public(ticket_row(session, ticket_id))


def get_ticket_by_external_id(session: Session, external_id: str) -> TicketPublic | None:
    row = session.exec(select(Ticket).where(Ticket.external_id == external_id)).first()
    return None if row is None else ticket_public(row)


def encode_cursor(ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{ticket_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, value = raw.split(":", 1)
        if tag != "t" or not 1 <= int(value) <= MAX_ROW_ID:
            raise ValueError(tag)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor is not one this server gave out (pass next_cursor unchanged)", "cursor") from exc


def check_department(name: str, field: str = "department") -> str:
    """`name` if it is a department; else InvalidInput naming it and the allowed names."""
    if name in DEPARTMENTS:
        return name
    hint = next((d for d in DEPARTMENTS if d.lower() == str(name).strip().lower()), None)
    extra = f" (did you mean {hint!r}?)" if hint else ""
    raise InvalidInput(f"unknown department {name!r}{extra}; allowed: {', '.join(DEPARTMENTS)}", field)


def list_tickets(session: Session, *, department: str | None = None, needs_review: bool | None = None,
                 since: datetime | None = None, limit: int = 50, cursor: str | None = None) -> TicketsPublic:
    """Newest first, keyset-paginated: pass the returned next_cursor to get the following page.

    department: tickets currently routed to it (the latest correction, else the routing).
    needs_review: tickets whose routing was unsure and that nobody corrected yet (or the others).
    since: tickets created at or after this time.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", "limit")
    query = select(Ticket)
    if department is not None:
        check_department(department)
        query = query.where(cast(Ticket.departments, String).like(f'%"{department}"%'))
    if needs_review is not None:
        query = query.where(Ticket.needs_review == needs_review)
    if since is not None:
        query = query.where(Ticket.created >= to_naive_utc(since))
    if cursor:
        query = query.where(col(Ticket.id) < decode_cursor(cursor))
    rows = session.exec(query.order_by(col(Ticket.id).desc()).limit(limit + 1)).all()
    page = [ticket_public(r) for r in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return TicketsPublic(tickets=page, next_cursor=next_cursor)
