"""The app factory shared by `triage serve` and the tests."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session

from router import store
from router.api import errors
from router.api.batching import GroupRouter
from router.api.limits import BodyLimit
from router.api.observability import Metrics, RequestContext
from router.api.routes import health, keys, metrics, models, routing, tickets, tuning
from router.api.schemas import ErrorOut
from router.db import engine_for
from router.service import RouterService
from router.settings import Settings

log = logging.getLogger(__name__)

KEYED_ERRORS = {
    401: {"model": ErrorOut, "description": "Missing, invalid or revoked API key"},
    403: {"model": ErrorOut, "description": "The key's role may not do this"},
    422: {"model": ErrorOut, "description": "Invalid input; `errors` names each bad field"},
}


def _grounder(settings: Settings):
    try:
        from rag.grounding import build_grounder
    except ModuleNotFoundError:
        return None
    return build_grounder(settings)


def _active_version(engine: Engine):
    with Session(engine) as session:
        return store.active_model_version(session)


def sync_active_model(app: FastAPI) -> None:
    """Serve the registry's active version if it changed since this worker last looked (promotes by
    other workers or by `triage models promote` reach every worker this way)."""
    state = app.state
    active = _active_version(state.engine)
    if active is None or active.version == state.model_version_seen:
        return
    log.info("serving model version %s (%s)", active.version, active.artifact_path)
    state.service.use_tuned(Path(active.artifact_path))
    state.model_version_seen = active.version


def _reap_dead_jobs(settings: Settings, engine: Engine) -> None:
    """A retraining job whose worker died (kill -9, power loss) is marked failed at startup; serving goes on."""
    from tuning.jobs.store import reap

    with Session(engine) as session:
        for job in reap(settings, session):
            log.warning("tuning job %s marked failed: %s", job.id, job.error)


def _warm(app: FastAPI) -> None:
    service: RouterService = app.state.service
    sync_active_model(app)
    service.engine  # noqa: B018 - loads the base model
    try:
        service.tuned_model  # noqa: B018 - loads the tuned artifact
    except Exception as exc:  # noqa: BLE001 - other strategies still work; requests for tuned say why
        log.warning("the tuned strategy is unavailable: %s", exc)


async def _poll(app: FastAPI, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(sync_active_model, app)
        except Exception as exc:  # noqa: BLE001 - keep serving the current version
            log.warning("could not switch to the registry's active model version: %s", exc)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    if not settings.lazy_model_load:
        await anyio.to_thread.run_sync(_warm, app)
    poller = asyncio.create_task(_poll(app, settings.model_poll_seconds)) if settings.model_poll_seconds else None
    try:
        yield
    finally:
        if poller is not None:
            poller.cancel()
        if app.state.owns_engine:
            app.state.engine.dispose()


def create_app(settings: Settings, service: RouterService | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The API over `settings`' database (the embedded SQLite one is created and migrated on first use);
    refuses (SchemaError) a PostgreSQL database whose schema is missing or old: run `triage db upgrade`.

    service: the RouterService to route with (tests pass a tiny one); default: one built from settings,
    serving the registry's active model version unless TRIAGE_TUNED_MODEL says otherwise.
    """
    owns_engine = engine is None
    engine = store.open_database(settings, engine or engine_for(settings))
    _reap_dead_jobs(settings, engine)
    active = _active_version(engine)
    # An explicit TRIAGE_TUNED_MODEL is served until the next promotion; otherwise the active version.
    seen = active.version if active is not None and settings.tuned_model is not None else None
    if service is None:
        use_active = active is not None and settings.tuned_model is None
        service = RouterService(settings, grounder=_grounder(settings),
                                tuned_path=Path(active.artifact_path) if use_active else None)
        seen = active.version if active is not None else None
    app = FastAPI(
        title="triage",
        version="1",
        summary="Route customer complaints to every department that must act.",
        description="Send `Authorization: Bearer <key>` (from `triage keys create`) on every call but /healthz.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.service, app.state.engine = settings, service, engine
    app.state.router = GroupRouter(service)
    app.state.owns_engine, app.state.model_version_seen = owns_engine, seen
    app.state.metrics = Metrics(engine, lambda: app.state.model_version_seen)
    app.state.router.observe = app.state.metrics.observe
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=app.state.metrics)  # outermost: sees 413s and 400s too
    for module in (health, routing, tickets, models, keys, tuning, metrics):
        # Declared, so generated clients parse every error as ErrorOut (FastAPI's default 422 is another shape).
        app.include_router(module.router, responses=None if module is health else KEYED_ERRORS)
    return app
