"""Dependencies: the request's session, the service, the settings, and who is calling (key + role)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from router.api.batching import GroupRouter
from router.security import allowed, authenticate, refusal
from router.service import RouterService
from router.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key from `triage keys create` (Authorization: Bearer <key>).")


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


def get_service(request: Request) -> RouterService:
    return request.app.state.service


def get_router(request: Request) -> GroupRouter:
    return request.app.state.router


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
ServiceDep = Annotated[RouterService, Depends(get_service)]
RouterDep = Annotated[GroupRouter, Depends(get_router)]  # route/route_many, concurrent calls batched together
SettingsDep = Annotated[Settings, Depends(get_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def denied(status: int, detail: str) -> HTTPException:
    exc = HTTPException(status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
    exc.errors = [{"field": "Authorization", "problem": detail}]  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


def require(permission: str) -> Callable[..., Caller]:
    """A dependency: 401 without a live key, 403 when the key's role lacks `permission`."""

    def caller(session: SessionDep, credentials: Credentials) -> Caller:
        if credentials is None:
            raise denied(401, "missing API key: send 'Authorization: Bearer <key>'")
        row = authenticate(session, credentials.credentials)
        if row is None:
            raise denied(401, "invalid or revoked API key")
        who = Caller(row.name, row.role)
        session.rollback()  # end the read transaction; the route starts its own
        if not allowed(who.role, permission):
            raise denied(403, refusal(who.role, permission))
        return who

    return caller


def caller_dep(permission: str):
    return Annotated[Caller, Depends(require(permission))]
