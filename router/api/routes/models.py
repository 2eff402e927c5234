"""Model versions: list, promote (hot-swaps the served soft prompt), roll back (supervisor)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from router import store
from router.api.deps import ServiceDep, SessionDep, caller_dep
from router.api.schemas import ErrorOut
from router.db.models import ModelVersionPublic

router = APIRouter(prefix="/v1/models", tags=["models"])
ERRORS = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@router.get("", response_model=list[ModelVersionPublic], summary="Every registered model version, newest first")
def list_models(session: SessionDep, _caller: caller_dep("models")) -> list[ModelVersionPublic]:
    return [ModelVersionPublic.model_validate(m) for m in store.list_model_versions(session)]


@router.post("/{version}/promote", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Serve this version from now on (no restart)")
def promote(version: str, request: Request, session: SessionDep, service: ServiceDep,
            caller: caller_dep("models")) -> ModelVersionPublic:
    row = store.promote(session, version, who=caller.name, service=service)
    request.app.state.model_version_seen = row.version
    return ModelVersionPublic.model_validate(row)


@router.post("/{version}/rollback", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Retire this active version and serve the one before it again")
def rollback(version: str, request: Request, session: SessionDep, service: ServiceDep,
             caller: caller_dep("models")) -> ModelVersionPublic:
    row = store.rollback(session, version, who=caller.name, service=service)
    request.app.state.model_version_seen = row.version
    return ModelVersionPublic.model_validate(row)
