"""Dependencies: the application core, the request's session, the settings, and who is calling (key + role)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from router.application import Application
from router.security import allowed, authenticate, refusal

bearer = HTTPBearer(auto_error=False, description="An API key from `triage keys create` (Authorization: Bearer <key>).")


def get_core(request: Request) -> Application:
    return request.app.state.core


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.core.session() as session:
        yield session


CoreDep = Annotated[Application, Depends(get_core)]  # routing (concurrent calls batched), intake, registry, jobs
SessionDep = Annotated[Session, Depends(get_session)]
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
