"""API key management (supervisor): list, create (secret shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter

from router import security
from router.api.deps import SessionDep, caller_dep
from router.api.schemas import ErrorOut
from router.db.models import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get("", response_model=list[ApiKeyPublic], summary="Every key (never the secrets)")
def list_keys(session: SessionDep, _caller: caller_dep("keys")) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(k) for k in security.list_keys(session)]


@router.post("", status_code=201, response_model=ApiKeyCreated, responses={409: {"model": ErrorOut}},
             summary="Create a key; its secret is in this answer only")
def create_key(body: ApiKeyCreate, session: SessionDep, _caller: caller_dep("keys")) -> ApiKeyCreated:
    row, secret = security.create_key(session, body.name, body.role)
    return ApiKeyCreated.model_validate({**ApiKeyPublic.model_validate(row).model_dump(), "key": secret})


@router.delete("/{name:path}", response_model=ApiKeyPublic, responses={404: {"model": ErrorOut}},
               summary="Revoke a key at once (any name, also one with '/' made before names were checked)")
def revoke_key(name: str, session: SessionDep, _caller: caller_dep("keys")) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(security.revoke_key(session, name))
