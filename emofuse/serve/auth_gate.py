"""Who may use the service, and how often: the bearer-token check and the per-client rate
limit in front of every route but the page shell and a minimal ``GET /health``."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware, request_header, send_json
from emofuse.serve.ratelimit import RateLimiter, retry_after_header
from emofuse.serve.tokens import Tokens

#: Paths a browser fetches before it can know the token: the page shell, its scripts and
#: styles, and the API docs shell. They hold no data; everything else needs the token.
PUBLIC_PATHS = frozenset({"/", "/docs", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/", "/docs-static/")
HEALTH_PATH = "/health"


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


class RequestGate(HttpMiddleware):
    """Bearer-token check and per-client rate limit in front of every route except the
    page shell and a minimal ``GET /health``."""

    def __init__(self, app: ASGIApp, tokens: Tokens | None, limiter: RateLimiter | None):
        super().__init__(app)
        self.tokens = tokens
        self.limiter = limiter

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        is_health = scope["method"] == "GET" and scope["path"] == HEALTH_PATH
        client = f"address {_client_address(scope)}"
        if self.tokens is not None:
            given = _bearer_token(scope)
            identity = self.tokens.match(given) if given else None
            if identity is None:
                if is_health:  # a load balancer's probe: alive, and nothing more
                    await _send_minimal_health(send)
                    return
                if await self._over_rate(client, send):  # guessing is rate limited too
                    return
                await _send_unauthorized(send, wrong=given is not None)
                return
            client = f"token {identity}"
        if not is_health and await self._over_rate(client, send):
            return
        await self.app(scope, receive, send)

    async def _over_rate(self, client: str, send: Send) -> bool:
        if self.limiter is None:
            return False
        wait_s = self.limiter.take(client)
        if wait_s <= 0:
            return False
        per_minute = self.limiter.rate_per_s * 60
        await send_json(
            send,
            429,
            f"too many requests from this client (limit {per_minute:g} a minute, bursts of "
            f"{self.limiter.burst}); retry in {retry_after_header(wait_s)} s",
            {"Retry-After": retry_after_header(wait_s)},
        )
        return True


def _bearer_token(scope: Scope) -> str | None:
    value = request_header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _send_unauthorized(send: Send, *, wrong: bool) -> None:
    if wrong:
        detail = "the API token is not valid"
        challenge = 'Bearer realm="emofuse", error="invalid_token"'
    else:
        detail = "this server needs an API token: send the header 'Authorization: Bearer <token>'"
        challenge = 'Bearer realm="emofuse"'
    await send_json(send, 401, detail, {"WWW-Authenticate": challenge})


async def _send_minimal_health(send: Send) -> None:
    body = b'{"status":"ok"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
