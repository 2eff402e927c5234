"""Shared CLI plumbing: settings from the context, errors as clean messages."""

from __future__ import annotations

import click
from pydantic import ValidationError


def known_errors() -> tuple[type[BaseException], ...]:
    from router.application.errors import ArtifactError, DataError, InputError, LabelError, ModelLoadError, StrategyError

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


def get_application(ctx: click.Context | None = None, *, tuned_model=None):
    """The application core of this invocation (database and model opened on first use).

    tuned_model: serve this artifact for the tuned strategy (`--model`) instead of the registry's active one.
    """
    from router.application import Application

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    settings = get_settings(ctx)
    if tuned_model is not None:
        settings = settings.model_copy(update={"tuned_model": tuned_model})
    if "application" not in root.obj:
        root.obj["application"] = Application(settings)
        root.call_on_close(root.obj["application"].close)
    return root.obj["application"]


def get_engine(ctx: click.Context | None = None):
    """The database of this invocation, ready to use: the embedded SQLite one is created and migrated on
    first use; a PostgreSQL one without this triage's schema raises SchemaError (run `triage db upgrade`)."""
    return get_application(ctx).database


def get_service(ctx: click.Context | None = None, *, tuned_model=None):
    """The routing service of this invocation (model loaded lazily, on first routing)."""
    return get_application(ctx, tuned_model=tuned_model).service
