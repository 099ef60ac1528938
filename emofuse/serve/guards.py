"""The ASGI middleware behind :func:`emofuse.serve.security.install_security`: token
check and rate limit, same-origin policy, hardening headers, slow-upload timeout, and an
access log without personal data."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.middleware import answer_unless_started, send_json
from emofuse.serve.ratelimit import RateLimiter, retry_after_header
from emofuse.serve.tokens import Tokens

if TYPE_CHECKING:
    from emofuse.serve.security import SecuritySettings

access_log = logging.getLogger("emofuse.serve.access")

#: Paths a browser fetches before it can know the token: the page shell, its scripts and
#: styles, and the API docs shell. They hold no data; everything else needs the token.
PUBLIC_PATHS = frozenset({"/", "/docs", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/", "/docs-static/")
HEALTH_PATH = "/health"

#: The page and the docs load scripts and styles from this server only, never inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (k.encode(), v.encode())
    for k, v in (
        ("cache-control", "no-store"),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("permissions-policy", "microphone=(self), camera=(), geolocation=()"),
    )
)
_REPLACED = {name for name, _ in SECURITY_HEADERS} | {b"expires", b"etag", b"last-modified"}
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def keep_uploads_in_memory() -> None:
    """Starlette spools uploads over 1 MB to a temporary file; a voice must never touch the
    disk, so keep every part in memory (the body limit still bounds the total)."""
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = 2**62


# ---------------------------------------------------------------- small ASGI helpers


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers") or () if k == name]
    if len(values) != 1:
        return None
    return values[0].decode("latin-1")


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


# ---------------------------------------------------------------- authentication + rate


class RequestGate:
    """Bearer-token check and per-client rate limit in front of every route except the
    page shell and a minimal ``GET /health``."""

    def __init__(self, app: ASGIApp, tokens: Tokens | None, limiter: RateLimiter | None):
        self.app = app
        self.tokens = tokens
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
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
    value = _header(scope, b"authorization")
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


# ---------------------------------------------------------------- cross-origin requests


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` with the default port made explicit, or None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def _host_and_port(origin: str) -> str:
    return origin.split("://", 1)[1]


def _same_origin(origin: str, scope: Scope) -> bool:
    """Does the browser's Origin name this server (as the browser reached it)?

    The scheme is not compared: behind a TLS-terminating proxy the page is https while
    this server sees http; the proxy must pass the Host header on unchanged."""
    normalized = normalize_origin(origin)
    host = _header(scope, b"host")
    if normalized is None or not host:
        return False
    scheme = normalized.split("://", 1)[0]
    here = normalize_origin(f"{scheme}://{host}")
    return here is not None and _host_and_port(here) == _host_and_port(normalized)


def is_local_host(host_header: str | None) -> bool:
    """Does a Host header name this machine by a loopback name or address?"""
    if not host_header:
        return False
    try:
        hostname = urlsplit(f"http://{host_header}").hostname or ""
    except ValueError:
        return False
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class LocalHostsOnly:
    """Without a token, answer only requests addressed to a loopback name: guards an
    unauthenticated local server against DNS rebinding."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_local_host(_header(scope, b"host")):
            await send_json(
                send,
                403,
                "this server has no API token, so it answers requests to localhost only; "
                "start it with --token-file to serve other host names",
            )
            return
        await self.app(scope, receive, send)


class OriginPolicy:
    """Same-origin by default: a request a browser sends from another site's page (it
    carries an ``Origin`` header) is refused with 403 unless that site was allowed with
    ``--cors-origin``; allowed sites get the CORS headers (and preflight answers) they need."""

    ALLOW_METHODS = b"GET, POST, OPTIONS"
    ALLOW_HEADERS = b"authorization, content-type"
    EXPOSE_HEADERS = b"retry-after"
    PREFLIGHT_MAX_AGE_S = b"600"

    def __init__(self, app: ASGIApp, allowed: Sequence[str] = ()):
        self.app = app
        self.any_origin = "*" in allowed
        self.allowed = {normalize_origin(o) for o in allowed if o != "*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None or _same_origin(origin, scope):
            await self.app(scope, receive, send)
            return
        if not (self.any_origin or normalize_origin(origin) in self.allowed):
            await send_json(
                send,
                403,
                f"cross-origin request from {origin[:200]} refused: this server answers its "
                "own pages only (start it with --cors-origin ORIGIN to allow another site)",
            )
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            headers = cors + [
                (b"access-control-allow-methods", self.ALLOW_METHODS),
                (b"access-control-allow-headers", self.ALLOW_HEADERS),
                (b"access-control-max-age", self.PREFLIGHT_MAX_AGE_S),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        *cors,
                        (b"access-control-expose-headers", self.EXPOSE_HEADERS),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_with_cors)


# ---------------------------------------------------------------- response headers


class SecurityHeaders:
    """No caching, no sniffing, no referrer, no framing, and a CSP without inline script,
    on every answer (the middleware's own refusals included)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message = {**message, "headers": kept + list(SECURITY_HEADERS)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------- slow uploads


class BodyStalled(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(
            408,
            f"the request body stalled: nothing arrived for {timeout_s:g} s",
            headers={"Connection": "close"},
        )


class BodyIdleTimeout:
    """A client that stops sending its body mid-way gets 408 after ``timeout_s`` instead
    of holding a connection (and its buffered upload) forever."""

    def __init__(self, app: ASGIApp, timeout_s: float):
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive() waits for a disconnect: no limit
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise BodyStalled(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await answer_unless_started(self.app, scope, timed_receive, send, BodyStalled)


# ---------------------------------------------------------------- access log


def route_name(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The route template a request matched (``/predict``, ``/static/{path}``), never the
    raw path or query, which may hold anything a client typed; ``-`` when none matched."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            path = getattr(route, "path", "-")
            return f"{path}/{{path}}" if isinstance(route, Mount) else path
    return "-"


class AccessLog:
    """One line per request: method, route, status, response size, latency. Nothing a
    client sent (paths, queries, file names, transcripts, tokens, addresses) is logged,
    at any log level."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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


# ---------------------------------------------------------------- OpenAPI


def document_security(app: Any, settings: SecuritySettings) -> None:
    """Declare the bearer token (and the 401/429 answers) in the schema, so the docs page
    offers an Authorize button and clients know what to send."""
    if not hasattr(app, "openapi"):
        return
    build = app.openapi
    problem = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                }
            }
        }
    }

    def openapi() -> dict[str, Any]:
        schema = build()
        if schema.get("x-emofuse-security"):
            return schema
        schema["x-emofuse-security"] = True
        if settings.tokens is not None:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from the server's --token-file",
            }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if settings.tokens is not None and path != HEALTH_PATH:
                    operation["security"] = [{"bearer": []}]
                    responses.setdefault(
                        "401", {"description": "Missing or wrong API token", **problem}
                    )
                if settings.rate_per_minute > 0 and path != HEALTH_PATH:
                    responses.setdefault(
                        "429", {"description": "Too many requests; see Retry-After", **problem}
                    )
                responses.setdefault(
                    "403", {"description": "Cross-origin request not allowed", **problem}
                )
        return schema

    app.openapi = openapi
