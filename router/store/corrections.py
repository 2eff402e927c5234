"""Corrections, acceptances and the supervisors' review queue; corrections become training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from sqlalchemy import exists
from sqlmodel import Session, col, select

from router.db.models import Correction, CorrectionPublic, Ticket, TicketPublic
from router.departments import canonical
from router.store.errors import InvalidInput
from router.store.tickets import ticket_row, check_department, ticket_public


def add_correction(session: Session, ticket_id: int, departments: Sequence[str], *, who: str,
                   why: str | None = None) -> CorrectionPublic:
    """Record the departments that should have been chosen; the ticket is routed to them from now on.

    (router.application's `correct` also shares it with the precedent store, so RAG retrieves it at once.)
    """
    if not departments:
        raise InvalidInput("departments is empty: name every department that must act", "departments")
    seen: dict[str, int] = {}
    for i, name in enumerate(departments):
        check_department(name, f"departments[{i}]")
        if name in seen:
            raise InvalidInput(f"{name!r} is listed twice (departments[{seen[name]}] and departments[{i}]): "
                               "name each department once", f"departments[{i}]")
        seen[name] = i
    names = canonical(departments)
    ticket = ticket_row(session, ticket_id)
    why = why.strip() if why and why.strip() else None
    correction = Correction(departments=names, who=who, why=why)
    ticket.corrections.append(correction)
    ticket.departments, ticket.needs_review = names, False
    session.add(ticket)
    session.commit()
    session.refresh(correction)
    return CorrectionPublic.model_validate(correction)


def accept_routing(session: Session, ticket_id: int) -> TicketPublic:
    """An agent confirmed the routing: the ticket leaves the review queue."""
    ticket = ticket_row(session, ticket_id)
    ticket.needs_review = False
    session.add(ticket)
    session.commit()
    return ticket_public(ticket)


def untrained_corrections(session: Session) -> list[CorrectionPublic]:
    """Corrections no model version was trained on yet, oldest first (for retraining)."""
    rows = session.exec(select(Correction).where(col(Correction.used_in_version).is_(None)).order_by(Correction.id))
    return [CorrectionPublic.model_validate(r) for r in rows.all()]


def mark_corrections_used(session: Session, correction_ids: Sequence[int], version: str) -> int:
    """Record that `version` was trained on these corrections; returns how many were marked."""
    rows = session.exec(select(Correction).where(col(Correction.id).in_(list(correction_ids)))).all()
    for row in rows:
        row.used_in_version = version
        session.add(row)
    session.commit()
    return len(rows)


@dataclass
class ReviewItem:
    ticket: TicketPublic
    reason: Literal["low-confidence", "corrected-untrained"]


def review_queue(session: Session, limit: int = 50) -> list[ReviewItem]:
    """What a supervisor should look at: unsure routings lowest confidence first, then corrections not yet trained on."""
    low = session.exec(
        select(Ticket).where(col(Ticket.needs_review).is_(True))
        .order_by(col(Ticket.confidence).asc(), col(Ticket.id).asc()).limit(limit)
    ).all()
    items = [ReviewItem(ticket_public(t), "low-confidence") for t in low]
    if len(items) < limit:
        untrained = exists().where(Correction.ticket_id == Ticket.id, col(Correction.used_in_version).is_(None))
        rows = session.exec(
            select(Ticket).where(untrained, col(Ticket.needs_review).is_(False))
            .order_by(col(Ticket.id).asc()).limit(limit - len(items))
        ).all()
        items += [ReviewItem(ticket_public(t), "corrected-untrained") for t in rows]
    return items
