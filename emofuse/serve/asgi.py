"""Small ASGI pieces the service's middleware shares: a base class that lets everything
but HTTP requests through, reading one request header, and writing a JSON answer
straight to the ASGI channel (also when an app raises before its response started)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    """Base of the service's middleware: lifespan and websocket scopes pass straight
    through; each HTTP request goes to :meth:`handle`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def request_header(scope: Scope, name: bytes) -> str | None:
    """The value of header ``name`` (lower case), or None unless it is sent exactly once."""
    values = [v for k, v in scope.get("headers") or () if k == name]
    if len(values) != 1:
        return None
    return values[0].decode("latin-1")


async def send_json(
    send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    """A complete ``{"detail": ...}`` response written straight to the ASGI channel."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def answer_unless_started(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, problem: type[HTTPException]
) -> None:
    """Run ``app``; a ``problem`` it raises (outside FastAPI's own handlers) becomes a JSON
    answer with its status, detail and headers, unless the response had already started,
    in which case it propagates."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except problem as raised:
        if started:
            raise
        await send_json(send, raised.status_code, str(raised.detail), raised.headers)
