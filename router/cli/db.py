"""triage db: create or migrate the ticket database, and show where it is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from router.cli.common import get_settings


@contextmanager
def db_errors() -> Iterator[None]:
    """Schema and store refusals as 'triage: error: ...' and exit status 1 (like the other known errors)."""
    from router.db import SchemaError
    from router.store import StoreError

    try:
        yield
    except (SchemaError, StoreError) as exc:
        click.echo(f"triage: error: {exc}", err=True)
        raise SystemExit(1) from exc


@click.group()
def db() -> None:
    """The ticket database (SQLite under the data dir, ready on first use; or TRIAGE_DATABASE_URL)."""


@db.command()
def upgrade() -> None:
    """Create the schema or apply pending migrations (safe to run again).

    The embedded SQLite database is also created and migrated by the first command that needs it;
    a PostgreSQL database (TRIAGE_DATABASE_URL) is migrated only by this command.
    """
    from router.db import SCHEMA_VERSION, engine_for, safe_url
    from router.db import upgrade as run_upgrade

    engine = engine_for(get_settings())
    applied = run_upgrade(engine)
    for migration in applied:
        click.echo(f"applied {migration.version}: {migration.description}")
    click.echo(f"{safe_url(engine)} is at schema version {SCHEMA_VERSION}")


@db.command()
def status() -> None:
    """The database URL, its schema version and how many rows each table holds."""
    from sqlalchemy import func, inspect, select
    from sqlmodel import Session, SQLModel

    from router.db import SCHEMA_VERSION, current_version, engine_for, safe_url, sqlite_file

    engine = engine_for(get_settings())
    click.echo(f"database: {safe_url(engine)}")
    path = sqlite_file(engine)
    if path is not None and not path.exists():  # looking must not create it
        click.echo("schema:   none yet: the file is created and migrated by the first command that needs it "
                   "(or `triage db upgrade`)")
        return
    version = current_version(engine)
    click.echo(f"schema:   version {version} (this triage needs {SCHEMA_VERSION})"
               + ("" if version == SCHEMA_VERSION else " — run `triage db upgrade`"))
    if version:
        import router.db.models  # noqa: F401 - registers the tables

        present = set(inspect(engine).get_table_names())
        with Session(engine) as session:
            for name, table in SQLModel.metadata.tables.items():
                if name in present:
                    count = session.execute(select(func.count()).select_from(table)).scalar_one()
                    click.echo(f"  {name:<20} {count}")
