"""A health check, and the store bound to one engine for callers without a session (the console)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, text
from sqlmodel import Session

from router.db.models import CorrectionPublic, ModelVersion, TicketPublic, TicketsPublic
from router.results import Routing
from router.settings import Settings
from router.store.corrections import ReviewItem, accept_routing, add_correction, review_queue
from router.store.models import list_model_versions
from router.store.tickets import create_ticket_with_routing, get_ticket, list_tickets


def ping(session: Session) -> None:
    """Raise unless the database answers."""
    session.exec(text("SELECT 1")).one()  # type: ignore[call-overload]
    session.rollback()


@dataclass
class Store:
    """The store functions bound to one engine, for callers without a session (the console)."""

    engine: Engine
    who: str = "console"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def record_routing(self, text_: str, routing: Routing, external_id: str | None = None) -> int:
        """Store a routed complaint; returns the ticket id."""
        with self.session() as s:
            return create_ticket_with_routing(s, text_, routing, external_id=external_id, source="console").id

    def record_correction(self, ticket_id: int, departments: Sequence[str], why: str | None = None,
                          who: str | None = None) -> CorrectionPublic:
        with self.session() as s:
            return add_correction(s, ticket_id, departments, who=who or self.who, why=why)

    def record_acceptance(self, ticket_id: int) -> TicketPublic:
        with self.session() as s:
            return accept_routing(s, ticket_id)

    def get_ticket(self, ticket_id: int) -> TicketPublic:
        with self.session() as s:
            return get_ticket(s, ticket_id)

    def list_tickets(self, **filters) -> TicketsPublic:
        with self.session() as s:
            return list_tickets(s, **filters)

    def review_queue(self, limit: int = 50) -> list[ReviewItem]:
        with self.session() as s:
            return review_queue(s, limit)

    def list_model_versions(self) -> list[ModelVersion]:
        with self.session() as s:
            return list_model_versions(s)


def open_store(settings: Settings) -> Store:
    """The store of `settings.resolved_database_url`, ready on first use (SchemaError for a PostgreSQL
    database without this triage's schema: run `triage db upgrade`)."""
    from router.store.setup import open_database

    return Store(open_database(settings))
