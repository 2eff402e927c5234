"""Versioned schema migrations, applied by ``triage db upgrade`` and, for the embedded SQLite database,
on first use (``router.db.ready``); never at import.

Each migration is a frozen snapshot of DDL: later model changes get a new
migration, never an edit of an old one. ``schema_version`` records what ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
)
from sqlalchemy.engine import Connection

from router.db.models import utcnow

VERSION_TABLE = "schema_version"


class SchemaError(RuntimeError):
    """The database schema is missing, older or newer than this triage."""


def _version_table(metadata: MetaData) -> Table:
    return Table(
        VERSION_TABLE, metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", String(200), nullable=False),
        Column("applied_at", DateTime(), nullable=False),
    )


def _v1_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "tickets", md,
        Column("id", Integer, primary_key=True),
        Column("text", Text, nullable=False),
        Column("external_id", String(200), nullable=True, unique=True),
        Column("source", String(40), nullable=False),
        Column("created", DateTime(), nullable=False, index=True),
        Column("departments", JSON, nullable=False),
        Column("needs_review", Boolean, nullable=False, index=True),
        Column("confidence", Float, nullable=True),
    )
    Table(
        "routings", md,
        Column("id", Integer, primary_key=True),
        Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
        Column("strategy", String(20), nullable=False),
        Column("model_version", String(200), nullable=True),
        Column("departments", JSON, nullable=False),
        Column("confidence", JSON, nullable=False),
        Column("input_tokens", Integer, nullable=False),
        Column("generated_tokens", Integer, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("passages", JSON, nullable=False),
        Column("needs_review", Boolean, nullable=False),
        Column("rag", Boolean, nullable=False),
        Column("created", DateTime(), nullable=False),
    )
    Table(
        "corrections", md,
        Column("id", Integer, primary_key=True),
        Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
        Column("departments", JSON, nullable=False),
        Column("who", String(200), nullable=False),
        Column("why", Text, nullable=True),
        Column("created", DateTime(), nullable=False),
        Column("used_in_version", String(200), nullable=True, index=True),
    )
    Table(
        "model_versions", md,
        Column("id", Integer, primary_key=True),
        Column("version", String(200), nullable=False, unique=True),
        Column("artifact_path", String(1000), nullable=False),
        Column("metadata", JSON, nullable=False),
        Column("metrics", JSON, nullable=False),
        Column("status", String(20), nullable=False, index=True),
        Column("promoted_by", String(200), nullable=True),
        Column("promoted_at", DateTime(), nullable=True),
        Column("created", DateTime(), nullable=False),
    )
    Table(
        "api_keys", md,
        Column("id", Integer, primary_key=True),
        Column("name", String(100), nullable=False, unique=True),
        Column("role", String(20), nullable=False),
        Column("prefix", String(32), nullable=False, index=True),
        Column("salt", String(64), nullable=False),
        Column("hashed_secret", String(128), nullable=False),
        Column("created", DateTime(), nullable=False),
        Column("revoked_at", DateTime(), nullable=True),
    )
    Table(
        "idempotency_records", md,
        Column("id", Integer, primary_key=True),
        Column("key", String(400), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("response", JSON, nullable=True),
        Column("status_code", Integer, nullable=False),
        Column("created", DateTime(), nullable=False),
        UniqueConstraint("key", name="uq_idempotency_key"),
    )
    Index("ix_tickets_review", md.tables["tickets"].c.needs_review, md.tables["tickets"].c.confidence)
    md.create_all(conn)


def _v2_tuning_jobs(conn: Connection) -> None:
    md = MetaData()
    Table(
        "tuning_jobs", md,
        Column("id", Integer, primary_key=True),
        Column("state", String(20), nullable=False, index=True),
        Column("phase", String(40), nullable=False),
        Column("who", String(200), nullable=False),
        Column("parameters", JSON, nullable=False),
        Column("options", JSON, nullable=False),
        Column("version", String(200), nullable=True),
        Column("running_slot", Integer, nullable=True, unique=True),
        Column("pid", Integer, nullable=True),
        Column("pid_started", String(40), nullable=True),
        Column("host", String(255), nullable=True),
        Column("cancel_requested", Boolean, nullable=False),
        Column("error", Text, nullable=True),
        Column("result", JSON, nullable=False),
        Column("created", DateTime(), nullable=False),
        Column("started", DateTime(), nullable=True),
        Column("finished", DateTime(), nullable=True),
    )
    md.create_all(conn)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tickets, routings, corrections, model versions, API keys, idempotency records", _v1_initial),
    Migration(2, "tuning jobs (retraining on corrections)", _v2_tuning_jobs),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def current_version(engine: Engine) -> int:
    """The highest applied migration (0 for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return 0
        table = _version_table(MetaData())
        rows = conn.execute(select(table.c.version)).scalars().all()
        return max(rows, default=0)


def upgrade(engine: Engine) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns what ran."""
    with engine.begin() as conn:
        _version_table(MetaData()).create(conn, checkfirst=True)
    done = current_version(engine)
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= done:
            continue
        with engine.begin() as conn:
            migration.apply(conn)
            table = _version_table(MetaData())
            conn.execute(table.insert().values(version=migration.version, description=migration.description,
                                               applied_at=utcnow()))
        applied.append(migration)
    return applied


def check_schema(engine: Engine) -> None:
    """Raise SchemaError with what to do unless the schema is exactly this triage's (changes nothing:
    a missing SQLite file is not created)."""
    from router.db.engine import safe_url, sqlite_file

    path = sqlite_file(engine)
    if path is not None and not path.exists():
        raise SchemaError(f"the database {safe_url(engine)} does not exist yet: any triage command that needs it "
                          "creates it, or run `triage db upgrade`")
    try:
        version = current_version(engine)
    except Exception as exc:  # unreachable server, bad file, wrong credentials
        raise SchemaError(f"cannot open the database {safe_url(engine)}: {exc}") from exc
    explicit = ("" if engine.url.get_backend_name() == "sqlite" else
                f" ({engine.url.get_backend_name()} databases are created and migrated only by that command)")
    if version == 0:
        raise SchemaError(f"the database {safe_url(engine)} has no triage schema yet: run `triage db upgrade`{explicit}")
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the database {safe_url(engine)} is at schema version {version}, this triage needs {SCHEMA_VERSION}: "
            f"run `triage db upgrade`{explicit}"
        )
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database {safe_url(engine)} is at schema version {version}, newer than this triage "
            f"({SCHEMA_VERSION}): upgrade triage"
        )
