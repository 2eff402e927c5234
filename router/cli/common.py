"""Shared CLI plumbing: settings from the context, errors as clean messages."""

from __future__ import annotations

import click
from pydantic import ValidationError


def known_errors() -> tuple[type[BaseException], ...]:
    from router.artifact import ArtifactError
    from router.dataset import DataError
    from router.departments import LabelError
    from router.engine import StrategyError
    from router.modelio import ModelLoadError
    from router.service import InputError

    return (ArtifactError, DataError, LabelError, StrategyError, ModelLoadError, InputError, FileNotFoundError,
            ValidationError, PermissionError)


class TriageGroup(click.Group):
    """Turns the product's own errors into 'triage: error: ...' on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except known_errors() as exc:
            message = str(exc)
            if isinstance(exc, ValidationError):
                message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            click.echo(f"triage: error: {message}", err=True)
            ctx.exit(1)


def get_settings(ctx: click.Context | None = None):
    """The one Settings object of this invocation, built on first use and kept on the context."""
    from router.settings import Settings

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    if "settings" not in root.obj:
        root.obj["settings"] = Settings()
    return root.obj["settings"]


def get_engine(ctx: click.Context | None = None):
    """The database of this invocation, ready to use: the embedded SQLite one is created and migrated on
    first use; a PostgreSQL one without this triage's schema raises SchemaError (run `triage db upgrade`)."""
    from router.store import open_database

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    settings = get_settings(ctx)
    if "engine" not in root.obj:
        root.obj["engine"] = open_database(settings)
    return root.obj["engine"]


def get_service(ctx: click.Context | None = None, **kwargs):
    """The RouterService of this invocation (model loaded lazily, on first routing)."""
    from router.service import RouterService

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    settings = get_settings(ctx)
    if "service" not in root.obj:
        root.obj["service"] = RouterService(settings, grounder=_grounder(settings), **kwargs)
    return root.obj["service"]


def _grounder(settings):
    try:
        from rag.grounding import build_grounder
    except ModuleNotFoundError:
        return None
    return build_grounder(settings)
