"""The ticketing database: tables (models), engine/sessions (engine) and migrations."""

from router.db.engine import engine_for, make_engine, safe_url, session_scope
from router.db.migrations import SCHEMA_VERSION, SchemaError, check_schema, current_version, upgrade

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "check_schema",
    "current_version",
    "engine_for",
    "make_engine",
    "safe_url",
    "session_scope",
    "upgrade",
]
