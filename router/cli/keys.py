"""triage keys: API keys for the HTTP API (roles: integration, agent, supervisor)."""

from __future__ import annotations

import click

from router.cli.common import get_engine
from router.cli.db import db_errors
from router.db.models import ROLES


def _session():
    from sqlmodel import Session

    engine = get_engine()
    return Session(engine)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command()
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@click.option("--name", required=True, help="Who or what uses the key (unique; letters, digits and . _ @ -).")
def create(role: str, name: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from router.security import create_key

    with db_errors(), _session() as session:
        row, secret = create_key(session, name, role)
    click.echo(secret)
    click.echo(f"created {role} key {row.name!r} (prefix {row.prefix}); it is shown only now", err=True)


@keys.command(name="list")
def list_() -> None:
    """Every key: name, role, prefix, created, revoked."""
    from router.security import list_keys

    with db_errors(), _session() as session:
        rows = list_keys(session)
    if not rows:
        click.echo("no keys yet: triage keys create --role supervisor --name NAME", err=True)
        return
    click.echo(f"{'name':<24} {'role':<12} {'prefix':<14} {'created':<20} revoked")
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
        name = row.name if row.name.isprintable() else repr(row.name)  # a name made before names were checked
        click.echo(f"{name:<24} {row.role:<12} {row.prefix:<14} {row.created.isoformat(timespec='seconds'):<20} {revoked}")


@keys.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the key NAME at once."""
    from router.security import revoke_key

    with db_errors(), _session() as session:
        row = revoke_key(session, name)
    click.echo(f"revoked {row.name!r} ({row.role})")
