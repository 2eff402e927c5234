"""Every error as JSON naming the field and the problem: {"detail": ..., "errors": [{"field", "problem"}]}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from router.api.limits import TrackedSend
from router.application.errors import ArtifactError, Conflict, InputError, InvalidInput, LabelError, NotFound, StoreError, StrategyError

log = logging.getLogger(__name__)

FASTAPI_PARSE_ERROR = "There was an error parsing the body"  # fastapi.routing's 400 for a body json.loads fails on


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status, headers=headers)


def field_name(loc: tuple | list) -> str:
    """('body', 'tickets', 2, 'text') -> 'tickets[2].text'; ('header', 'idempotency-key') -> 'Idempotency-Key'."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in ("body", "query", "path", "header", "cookie") else None
    if not parts:
        return "body" if where in (None, "body") else str(where)
    if where == "header":
        return "-".join(p.capitalize() for p in str(parts[0]).split("-"))
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _problem(error: dict[str, Any], request: Request) -> dict[str, Any]:
    kind, loc, msg = error.get("type", ""), tuple(error.get("loc", ())), error.get("msg", "invalid")
    if kind == "json_invalid":
        where = loc[1] if len(loc) > 1 else "?"
        return {"field": "body", "problem": f"not valid JSON (at character {where}: {error.get('ctx', {}).get('error', msg)})"}
    if loc == ("body",) and kind == "missing":
        return {"field": "body", "problem": "the request body is missing: send a JSON object"}
    if loc == ("body",) and not _is_json(request):
        return {"field": "body", "problem": "the request body must be JSON, sent with Content-Type: application/json"}
    if loc == ("body",):
        got = type(error.get("input")).__name__.replace("NoneType", "null").replace("list", "array")
        return {"field": "body", "problem": f"the request body must be a JSON object, not {got}"}
    if kind == "extra_forbidden":
        msg = "unknown field (not part of this request; check the spelling)"
    elif kind == "value_error":
        msg = str(error.get("ctx", {}).get("error", msg))
    return {"field": field_name(loc), "problem": msg}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [_problem(e, request) for e in exc.errors()]
    detail = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
    return error_response(422, detail, problems)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and detail == FASTAPI_PARSE_ERROR and not getattr(exc, "errors", None):
        # The body is JSON text but json.loads gave up on it (not a syntax error, which is a 422 already):
        # like every other body that cannot be read, a 422 naming the body.
        cause = exc.__cause__
        problem = ("the JSON is nested too deeply to read (keep objects and arrays under a few hundred levels)"
                   if isinstance(cause, RecursionError) else
                   f"the request body could not be read as JSON ({type(cause).__name__ if cause else 'unknown error'})")
        return error_response(422, f"body: {problem}", [{"field": "body", "problem": problem}])
    errors = getattr(exc, "errors", None)
    return error_response(exc.status_code, detail, errors, getattr(exc, "headers", None))


def _one(status: int, exc: Exception, field: str | None) -> JSONResponse:
    message = str(exc)
    detail = f"{field}: {message}" if field and not message.startswith(field) else message
    return error_response(status, detail, [{"field": field, "problem": message}])


async def store_error(request: Request, exc: StoreError) -> JSONResponse:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
    return _one(status, exc, exc.field)


async def input_error(request: Request, exc: InputError) -> JSONResponse:
    return _one(422, exc, exc.field)


async def label_error(request: Request, exc: LabelError) -> JSONResponse:
    return _one(422, exc, "departments")


async def strategy_error(request: Request, exc: StrategyError) -> JSONResponse:
    return _one(422, exc, "strategy")


async def artifact_error(request: Request, exc: ArtifactError) -> JSONResponse:
    return _one(503, exc, None)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error (logged on the server)")


class ServerErrors:
    """A pure-ASGI middleware just outside the routes: an exception no handler took is logged and answered with
    the JSON 500, and goes no further. (Starlette's outermost handler re-raises after answering, and uvicorn
    then closes the connection, so the client's next request on the same keep-alive connection failed too.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except StarletteHTTPException:
            raise  # answered further out (BodyLimit's 413/400 for bodies no route read)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if tracked.started:  # half an answer went out: only closing the connection can tell the client
                raise
            await error_response(500, "internal server error (logged on the server)")(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(InvalidInput, store_error)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(InputError, input_error)
    app.add_exception_handler(LabelError, label_error)
    app.add_exception_handler(StrategyError, strategy_error)
    app.add_exception_handler(ArtifactError, artifact_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.add_middleware(ServerErrors)  # innermost of the middlewares: the ones added later wrap it
