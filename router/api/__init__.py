"""The HTTP API (FastAPI). Only this package and tui/ may import fastapi/starlette."""

from router.api.app import create_app

__all__ = ["create_app"]
