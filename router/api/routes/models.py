"""Model versions: list, promote (hot-swaps the served tuned model), roll back (supervisor)."""

from __future__ import annotations

from fastapi import APIRouter

from router.api.deps import CoreDep, caller_dep
from router.api.schemas import ErrorOut
from router.db.models import ModelVersionPublic

router = APIRouter(prefix="/v1/models", tags=["models"])
ERRORS = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@router.get("", response_model=list[ModelVersionPublic], summary="Every registered model version, newest first")
def list_models(core: CoreDep, _caller: caller_dep("models")) -> list[ModelVersionPublic]:
    return [ModelVersionPublic.model_validate(m) for m in core.registry.versions()]


@router.post("/{version}/promote", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Serve this version from now on (no restart)")
def promote(version: str, core: CoreDep, caller: caller_dep("models")) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(core.registry.promote(version, who=caller.name))


@router.post("/{version}/rollback", response_model=ModelVersionPublic, responses=ERRORS,
             summary="Retire this active version and serve the one before it again")
def rollback(version: str, core: CoreDep, caller: caller_dep("models")) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(core.registry.rollback(version, who=caller.name))
