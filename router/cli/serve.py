"""triage serve: the HTTP API under uvicorn."""

from __future__ import annotations

import click

from router.cli.common import get_engine, get_settings
from router.cli.db import db_errors


@click.command()
@click.option("--host", default=None, help="Default: TRIAGE_HOST (127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: TRIAGE_PORT (8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Default: TRIAGE_WORKERS (1).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API (docs at /docs); calls need a key from `triage keys create`.

    The embedded SQLite database is created on first use; a PostgreSQL one needs `triage db upgrade` first.
    """
    import uvicorn

    settings = get_settings()
    host, port, workers = host or settings.host, port or settings.port, workers or settings.workers
    with db_errors():
        engine = get_engine()  # ready (or refused, with the fix in the message) before binding the port
    engine.dispose()
    if workers == 1:
        from router.api import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
    else:  # each worker process builds its own app from the same environment
        uvicorn.run("router.api.main:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="info", timeout_graceful_shutdown=10)
