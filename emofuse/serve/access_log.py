"""The service's access log (logger ``emofuse.serve.access``): one line per request with
method, route template, status, response size and latency, and nothing a client sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware

access_log = logging.getLogger("emofuse.serve.access")

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_name(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The route template a request matched (``/predict``, ``/static/{path}``), never the
    raw path or query, which may hold anything a client typed; ``-`` when none matched."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            path = getattr(route, "path", "-")
            return f"{path}/{{path}}" if isinstance(route, Mount) else path
    return "-"


class AccessLog(HttpMiddleware):
    """One line per request: method, route, status, response size, latency. Nothing a
    client sent (paths, queries, file names, transcripts, tokens, addresses) is logged,
    at any log level."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]):
        super().__init__(app)
        self.routes = routes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = route_name(self.routes, scope)  # before routing rewrites the scope
        status = 0
        size = 0

        async def measuring_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, measuring_send)
        except BaseException:
            status = status or 500
            raise
        finally:
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            access_log.info(
                "%s %s %d %dB %.1fms",
                method,
                route,
                status,
                size,
                (time.perf_counter() - started) * 1000,
            )
