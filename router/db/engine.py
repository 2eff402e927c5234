"""The database engine and sessions.

SQLite (the default, under ``settings.data_dir``) runs in WAL mode with a busy
timeout, foreign keys on and real transactions (DDL included), all set on every
new connection. PostgreSQL (``TRIAGE_DATABASE_URL=postgresql+psycopg://...``)
uses the same code: no SQLite-only SQL is issued anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from router.settings import Settings

BUSY_TIMEOUT_MS = 15_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the driver, open transactions (so DDL is transactional too).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process loses no commit
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; for SQLite the directory is created and WAL is set up."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def engine_for(settings: Settings) -> Engine:
    return make_engine(settings.resolved_database_url)


def sqlite_file(engine_or_url: Engine | str) -> Path | None:
    """The file of an embedded SQLite database; None for a server database or an in-memory one."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:")
            or url.query.get("mode") == "memory"):
        return None
    return Path(database).expanduser()


def safe_url(engine_or_url: Engine | str) -> str:
    """The URL with any password hidden (for messages)."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that is closed afterwards (callers commit what they mean to keep)."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
