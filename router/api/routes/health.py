"""Liveness (no key) and readiness (model loaded, database reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from router import store
from router.api.deps import ServiceDep, SessionDep, caller_dep
from router.api.schemas import ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}},
            summary="Ready to route: model loaded and database reachable")
def readyz(session: SessionDep, service: ServiceDep, _caller: caller_dep("read")) -> JSONResponse:
    problems = []
    if not service.loaded:
        problems.append("the model is not loaded yet")
    try:
        store.ping(session)
        database = True
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        database = False
        problems.append(f"the database does not answer: {exc.__class__.__name__}")
    out = ReadyOut(ready=not problems, model_loaded=service.loaded, database=database, problems=problems)
    return JSONResponse(out.model_dump(), status_code=200 if out.ready else 503)
