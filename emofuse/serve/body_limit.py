"""The request-body limit, enforced below FastAPI: from Content-Length at once, and while
a chunked body streams in, so a 1 GB body is never read into memory. One limit for the
service, and optionally other limits for given paths (`POST /timeline` takes a recording,
not a clip): :func:`set_path_body_limit`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware, answer_unless_started, send_json
from emofuse.serve.schemas import RequestProblem


class BodyTooLarge(RequestProblem):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"request body larger than the server's limit of {limit} bytes "
            f"({limit / 1024 / 1024:.1f} MB); send a shorter clip or fewer files",
            headers={"Connection": "close"},
        )


class BodyLimitMiddleware(HttpMiddleware):
    """Refuse bodies over ``max_body_bytes`` with a 413 JSON answer; a request whose path
    is a key of ``path_limits`` gets that limit instead (larger or smaller)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, path_limits: Mapping[str, int] | None = None
    ):
        super().__init__(app)
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})
        for path, limit in [("", max_body_bytes), *self.path_limits.items()]:
            if limit < 1:
                where = f" of {path}" if path else ""
                raise ValueError(f"the body limit{where} must be at least 1 byte, not {limit}")

    def limit_for(self, path: str) -> int:
        return self.path_limits.get(path, self.max_body_bytes)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_json(send, 400, f"invalid Content-Length header {declared!r}")
                return
            if size > limit:
                problem = BodyTooLarge(limit)
                await send_json(send, 413, problem.detail, problem.headers)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await answer_unless_started(self.app, scope, limited_receive, send, BodyTooLarge)


def set_path_body_limit(app: Any, path: str, max_body_bytes: int) -> None:
    """Give requests to ``path`` their own body limit on an app (FastAPI/Starlette, before
    it starts) that has a :class:`BodyLimitMiddleware`; the other paths keep the app's."""
    for i, entry in enumerate(app.user_middleware):
        if entry.cls is BodyLimitMiddleware:
            kwargs = dict(entry.kwargs)
            kwargs["path_limits"] = {**(kwargs.get("path_limits") or {}), path: max_body_bytes}
            app.user_middleware[i] = Middleware(BodyLimitMiddleware, *entry.args, **kwargs)
            return
    raise ValueError(f"{path}: the app has no BodyLimitMiddleware to give a body limit to")
