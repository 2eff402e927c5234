"""The ticketing database: tables (models), engine/sessions (engine), migrations, and readiness on first use."""

from router.db.engine import engine_for, make_engine, safe_url, session_scope, sqlite_file
from router.db.migrations import SCHEMA_VERSION, SchemaError, check_schema, current_version, upgrade
from router.db.ready import ensure_schema, is_embedded

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "check_schema",
    "current_version",
    "engine_for",
    "ensure_schema",
    "is_embedded",
    "make_engine",
    "safe_url",
    "session_scope",
    "sqlite_file",
    "upgrade",
]
