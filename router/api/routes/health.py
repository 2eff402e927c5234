"""Liveness (no key) and readiness (model loaded, database reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from router.api.deps import CoreDep, caller_dep
from router.api.schemas import ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}},
            summary="Ready to route: model loaded and database reachable")
def readyz(core: CoreDep, _caller: caller_dep("read")) -> JSONResponse:
    state = core.readiness()
    out = ReadyOut(ready=state.ready, model_loaded=state.model_loaded, database=state.database, problems=state.problems)
    return JSONResponse(out.model_dump(), status_code=200 if out.ready else 503)
