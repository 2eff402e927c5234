"""Prometheus metrics in the text exposition format (any API key; see router/api/observability.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from router.api.deps import caller_dep
from router.api.observability import CONTENT_TYPE
from router.api.schemas import ErrorOut

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (needs an API key of any role)",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                       401: {"model": ErrorOut}})
def metrics(request: Request, _caller: caller_dep("read")) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
