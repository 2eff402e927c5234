"""The app factory shared by `triage serve` and the tests."""

from __future__ import annotations

import asyncio
import logging

from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine

from router.api import errors
from router.api.limits import BodyLimit
from router.api.observability import Metrics, RequestContext
from router.api.routes import health, keys, metrics, models, routing, tickets, tuning
from router.api.schemas import ErrorOut
from router.application import Application, RouterService
from router.settings import Settings

log = logging.getLogger(__name__)

KEYED_ERRORS = {
    401: {"model": ErrorOut, "description": "Missing, invalid or revoked API key"},
    403: {"model": ErrorOut, "description": "The key's role may not do this"},
    422: {"model": ErrorOut, "description": "Invalid input; `errors` names each bad field"},
}


async def _follow_registry(core: Application, every: float) -> None:
    """Promotes made by other replicas, the CLI or a console reach this worker within `every` seconds."""
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(core.registry.sync)
        except Exception as exc:  # noqa: BLE001 - keep serving the current version
            log.warning("could not switch to the registry's active model version: %s", exc)


@asynccontextmanager
async def lifespan(app: FastAPI):
    core: Application = app.state.core
    if not core.settings.lazy_model_load:
        await anyio.to_thread.run_sync(core.load)
    every = core.settings.model_poll_seconds
    poller = asyncio.create_task(_follow_registry(core, every)) if every else None
    try:
        yield
    finally:
        if poller is not None:
            poller.cancel()
        core.close()


def create_app(settings: Settings, service: RouterService | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The API over `settings`' database (the embedded SQLite one is created and migrated on first use);
    refuses (SchemaError) a PostgreSQL database whose schema is missing or old: run `triage db upgrade`.

    service: the routing service (tests pass a tiny one); default: the application core builds one from the
    settings, serving the registry's active model version unless TRIAGE_TUNED_MODEL says otherwise.
    """
    core = Application(settings, service=service, database=engine)
    core.database  # noqa: B018 - opened (and the embedded one migrated) now, so a bad database fails the start
    core.registry  # noqa: B018 - notes which version is served before any request
    app = FastAPI(
        title="triage",
        version="1",
        summary="Route customer complaints to every department that must act.",
        description="Send `Authorization: Bearer <key>` (from `triage keys create`) on every call but /healthz.",
        lifespan=lifespan,
    )
    app.state.core = core
    app.state.metrics = Metrics(core.stored_counts, lambda: core.registry.served_version)
    core.scheduler.observe = app.state.metrics.observe
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=app.state.metrics)  # outermost: sees 413s and 400s too
    for module in (health, routing, tickets, models, keys, tuning, metrics):
        # Declared, so generated clients parse every error as ErrorOut (FastAPI's default 422 is another shape).
        app.include_router(module.router, responses=None if module is health else KEYED_ERRORS)
    return app
