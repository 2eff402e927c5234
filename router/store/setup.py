"""The database every front end opens: ready on first use, with the served model in the registry.

``open_database`` is what `triage serve`, `triage console` and every CLI command that reads or writes
tickets, corrections, keys, models or jobs calls before anything else (the API's app factory too).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlmodel import Session, select

from router.db import engine_for, ensure_schema
from router.db.models import ModelVersion
from router.settings import DEFAULT_TUNED, Settings
from router.store.errors import Conflict, InvalidInput
from router.store.models import register_model_version

log = logging.getLogger(__name__)

SHIPPED_BY = "triage:shipped"


def open_database(settings: Settings, engine: Engine | None = None) -> Engine:
    """The engine of `settings`' database, ready to use.

    The embedded SQLite database is created and migrated here on first use; a PostgreSQL one must
    already be at this triage's schema (SchemaError saying to run `triage db upgrade` otherwise).
    """
    engine = engine or engine_for(settings)
    ensure_schema(engine)
    register_shipped_model(engine, settings)
    return engine


def register_shipped_model(engine: Engine, settings: Settings) -> ModelVersion | None:
    """On an empty registry, register the shipped artifact as the active version (returned), because it is
    what serving uses when nothing is registered: it is then listed, and promote/rollback work on it like
    on any trained version. Nothing happens once any version exists, or when TRIAGE_TUNED_MODEL names
    another artifact (that one is served until the next promotion, and is not registered)."""
    if settings.tuned_model is not None:
        return None
    with Session(engine, expire_on_commit=False) as session:
        if session.exec(select(ModelVersion.id).limit(1)).first() is not None:
            return None
        try:
            row = register_model_version(session, DEFAULT_TUNED, active_by=SHIPPED_BY)
        except InvalidInput as exc:  # a checkout without the shipped artifact: the registry stays empty
            log.warning("the shipped model was not registered: %s", exc)
            return None
        except Conflict:  # another process registered it a moment ago
            return None
    log.info("registered the shipped model %s as the active version", row.version)
    return row
