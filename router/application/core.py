"""The application core: one object per entry point, built from the settings, that every front end calls.

It owns the routing service with its request scheduler (concurrent calls batched, for every front end),
the store (persistence only), the model registry (promote / rollback / follow what is active), retraining
(tuning.jobs, for everyone), the retrieval grounder, intake (route + store, idempotent) and corrections.
The CLI, the API routes and the console hold no orchestration of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

from sqlalchemy import Engine
from sqlmodel import Session

from router import store
from router.application.grounding import build_grounder, share_precedent
from router.application.intake import intake
from router.application.registry import ModelRegistry
from router.application.retraining import Retraining
from router.application.scheduler import RequestScheduler
from router.application.stats import stored_counts
from router.db import engine_for, sqlite_file
from router.db.models import CorrectionPublic, TicketCreate, TicketPublic, TicketsPublic
from router.memory import release_freed_memory
from router.results import STRATEGIES, Routing
from router.service import RouterService
from router.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    model_loaded: bool
    database: bool
    problems: list[str]

    @property
    def ready(self) -> bool:
        return not self.problems


class Application:
    """Routing, intake, corrections, the model registry and retraining over one settings object.

    database: an open engine (tests, the API's factory); default: `settings`' database, opened on first use
    (the embedded SQLite one is created and migrated then; a PostgreSQL one must be at this schema).
    service: the routing service (tests pass a tiny one); default: one built from the settings, with the
    RAG grounder, serving the registry's active version unless TRIAGE_TUNED_MODEL names another artifact
    (that one is served until the next promotion).
    """

    def __init__(self, settings: Settings, *, service: RouterService | None = None, database: Engine | None = None):
        self.settings = settings
        self._given_service, self._given_database = service, database
        self.owns_database = database is None
        self.reaped_jobs: list = []

    # -- parts, built on first use ---------------------------------------------------------------
    @cached_property
    def database(self) -> Engine:
        engine = store.open_database(self.settings, self._given_database or engine_for(self.settings))
        self.reaped_jobs = Retraining(self.settings, engine).reap()  # jobs whose worker died, now marked failed
        for job in self.reaped_jobs:
            log.warning("tuning job %s marked failed: %s", job.id, job.error)
        return engine

    @cached_property
    def _active_at_start(self):
        with Session(self.database, expire_on_commit=False) as s:
            return store.active_model_version(s)

    @cached_property
    def service(self) -> RouterService:
        if self._given_service is not None:
            return self._given_service
        explicit = self.settings.tuned_model is not None
        active = None if explicit or not self._database_ready() else self._active_at_start
        return RouterService(self.settings, grounder=build_grounder(self.settings),
                             tuned_path=Path(active.artifact_path) if active is not None else None)

    def _database_ready(self) -> bool:
        """Whether routing may consult the registry: a database was given, configured by URL, or already exists
        (plain `triage route` on a fresh machine leaves no database behind)."""
        if self._given_database is not None or "database" in self.__dict__:
            return True
        path = sqlite_file(self.settings.resolved_database_url)
        return path is None or path.is_file()

    @cached_property
    def scheduler(self) -> RequestScheduler:
        return RequestScheduler(self.service)

    @cached_property
    def registry(self) -> ModelRegistry:
        active = self._active_at_start
        explicit = self.settings.tuned_model is not None
        # Serving the active version already, or an explicit artifact until the next promotion: nothing to sync.
        served = active.version if active is not None and (explicit or self._given_service is None) else None
        return ModelRegistry(self.database, self.service, served)

    @cached_property
    def retraining(self) -> Retraining:
        return Retraining(self.settings, self.database)

    @cached_property
    def store(self) -> store.Store:
        """The store bound to the database, for callers without a session (the console)."""
        return store.Store(self.database)

    def session(self) -> Session:
        return Session(self.database, expire_on_commit=False)

    # -- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> str | None:
        """Serve the registry's active version and load the models now (servers, the console). Raises when the
        base model cannot load; returns why the tuned strategy is unavailable (None when it loaded): the other
        strategies still work, and tuned requests say why."""
        if self._database_ready():
            self.registry.sync()
        self.service.engine  # noqa: B018 - loads the base model
        try:
            self.service.tuned_model  # noqa: B018 - loads the tuned artifact
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("the tuned strategy is unavailable: %s", exc)
            return str(exc) or type(exc).__name__
        finally:
            release_freed_memory()  # what loading freed (dequantized copies, merge buffers) goes back to the OS
        return None

    def close(self) -> None:
        if self.owns_database and "database" in self.__dict__:
            self.database.dispose()

    # -- routing -----------------------------------------------------------------------------------
    def route(self, text: str, strategy: str | None = None, **options) -> Routing:
        return self.scheduler.route(text, strategy, **options)

    def route_many(self, texts: Sequence[str], strategy: str | None = None, **options) -> list[Routing]:
        return self.scheduler.route_many(texts, strategy, **options)

    def compare(self, text: str, strategies: Sequence[str] = STRATEGIES, **options) -> list[Routing]:
        """Every strategy on one complaint, side by side (options: shots, rag, precedents)."""
        return list(self.compare_iter(text, strategies, **options))

    def compare_iter(self, text: str, strategies: Sequence[str] = STRATEGIES, **options) -> Iterator[Routing]:
        """Each strategy's routing as soon as it is done (for live side-by-side views)."""
        for strategy in strategies:
            yield self.scheduler.route(text, strategy, **options)

    # -- tickets -----------------------------------------------------------------------------------
    def intake(self, session: Session, items: Sequence[TicketCreate], **options) -> store.IntakeResult:
        """Route and store complaints exactly once per external_id / idempotency key (see application.intake)."""
        return intake(session, self.scheduler, items, **options)

    def record_routing(self, text: str, routing: Routing) -> int:
        """Store a complaint routed already (the console routes it live first); returns the ticket id."""
        return self.store.record_routing(text, routing)

    def correct(self, ticket_id: int, departments: Sequence[str], *, who: str, why: str | None = None,
                session: Session | None = None) -> CorrectionPublic:
        """Store the departments that should have been chosen; the correction is a RAG precedent at once."""
        if session is None:
            with self.session() as s:
                return self.correct(ticket_id, departments, who=who, why=why, session=s)
        out = store.add_correction(session, ticket_id, departments, who=who, why=why)
        ticket = store.get_ticket(session, ticket_id)
        share_precedent(self.settings, ticket.text, list(out.departments), f"ticket-{ticket_id}")
        return out

    def ticket(self, ticket_id: int) -> TicketPublic:
        return self.store.get_ticket(ticket_id)

    def tickets(self, **filters) -> TicketsPublic:
        """Tickets newest first, keyset-paginated (see store.list_tickets for the filters)."""
        return self.store.list_tickets(**filters)

    def readiness(self) -> Readiness:
        """Whether the model is loaded and the database answers, and what keeps this process from routing."""
        loaded = self.service.loaded
        problems = [] if loaded else ["the model is not loaded yet"]
        try:
            with self.session() as s:
                store.ping(s)
            database = True
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            database = False
            problems.append(f"the database does not answer: {exc.__class__.__name__}")
        return Readiness(loaded, database, problems)

    def stored_counts(self) -> dict:
        """Tickets per department, review counts and jobs by state, as stored now (for /metrics)."""
        return stored_counts(self.database)

    def is_supervisor_key(self, key: str) -> bool:
        """Whether `key` is a live supervisor API key (opens the console's supervisor view)."""
        from router.security import authenticate

        with self.session() as s:
            row = authenticate(s, key)
            return row is not None and row.role == "supervisor"

    def accept(self, ticket_id: int) -> TicketPublic:
        """An agent confirmed the routing: the ticket leaves the review queue."""
        return self.store.record_acceptance(ticket_id)
