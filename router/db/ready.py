"""A database ready for use: the embedded SQLite file is created and migrated on first use;
PostgreSQL (or any other server) is only checked, since its schema changes only by `triage db upgrade`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import Engine

from router.db.engine import safe_url, sqlite_file
from router.db.migrations import SCHEMA_VERSION, SchemaError, check_schema, current_version, upgrade

log = logging.getLogger(__name__)

RACE_RETRIES = 3  # another process creating the same file at the same moment


def is_embedded(engine: Engine) -> bool:
    return engine.url.get_backend_name() == "sqlite"


def _remove_created(engine: Engine, path: Path) -> None:
    """Take away a database file this process created and could not make ready (with its WAL files)."""
    engine.dispose()
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                     path.with_name(path.name + "-journal")):
        leftover.unlink(missing_ok=True)


def ensure_schema(engine: Engine) -> list:
    """Make the database usable by this triage; returns the migrations applied (empty when it already was).

    Embedded SQLite: created (file and directory) and migrated to SCHEMA_VERSION; a file this call created
    and could not migrate is removed again. A server database: SchemaError unless it is already at
    SCHEMA_VERSION (it is migrated by `triage db upgrade` only). A schema newer than this triage is
    refused in both cases.
    """
    if not is_embedded(engine):
        check_schema(engine)
        return []
    path = sqlite_file(engine)
    created = path is not None and not path.exists()
    try:
        return _migrate_embedded(engine)
    except Exception as exc:
        if created and path is not None:
            _remove_created(engine, path)
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"cannot create or migrate the database {safe_url(engine)}: {exc}") from exc


def _migrate_embedded(engine: Engine) -> list:
    for attempt in range(1, RACE_RETRIES + 1):
        try:
            version = current_version(engine)
            if version > SCHEMA_VERSION:
                check_schema(engine)  # raises: newer than this triage
            if version == SCHEMA_VERSION:
                return []
            applied = upgrade(engine)
            log.info("database %s migrated to schema version %s", safe_url(engine), SCHEMA_VERSION)
            return applied
        except SchemaError:
            raise
        except Exception:
            if attempt == RACE_RETRIES:
                raise
            time.sleep(0.2 * attempt)  # two first commands at once: the other may be creating the same tables
    return []
