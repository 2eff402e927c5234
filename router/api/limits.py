"""A pure-ASGI middleware: request bodies over the limit get 413, bodies that are not UTF-8 get 400.

It counts bytes as they arrive (a lying or missing Content-Length does not help)
and checks UTF-8 incrementally, so nothing reaches a route that cannot be parsed.
"""

from __future__ import annotations

import codecs
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyRejected(HTTPException):
    def __init__(self, status: int, detail: str, field: str = "body"):
        super().__init__(status, detail)
        self.errors = [{"field": field, "problem": detail}]


class TrackedSend:
    """An ASGI `send` that remembers whether the response has started (after that, no other answer can go out)."""

    def __init__(self, send: Send):
        self.send, self.started = send, False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, self._too_large(int(declared)))
            return
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        check_utf8 = not kind or kind == "application/json" or kind.endswith("+json") or kind.startswith("text/")
        decoder = codecs.getincrementaldecoder("utf-8")()
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    raise self._too_large(seen)
                if check_utf8:
                    try:
                        decoder.decode(chunk, final=not message.get("more_body", False))
                    except UnicodeDecodeError as exc:
                        at = seen - len(chunk) + exc.start
                        raise BodyRejected(400, f"the request body is not valid UTF-8 (bad byte at offset {at})")
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyRejected as exc:  # raised where no route handled it
            if tracked.started:
                raise
            await self._reject(send, exc)

    def _too_large(self, size: int) -> BodyRejected:
        return BodyRejected(413, f"the request body is {size} bytes or more; the limit is {self.max_bytes}")

    @staticmethod
    async def _reject(send: Send, exc: BodyRejected) -> None:
        body = json.dumps({"detail": exc.detail, "errors": exc.errors}).encode()
        await send({"type": "http.response.start", "status": exc.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
