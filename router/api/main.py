"""Entry point for uvicorn workers (`triage serve --workers N` imports this in each worker)."""

from __future__ import annotations

from fastapi import FastAPI


def app_from_env() -> FastAPI:
    """The app for the settings in the environment (TRIAGE_*, config file)."""
    from router.api.app import create_app
    from router.settings import Settings

    return create_app(Settings())
