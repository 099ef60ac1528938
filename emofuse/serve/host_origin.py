"""Which sites and host names the service answers: same-origin by default (a page of
another site is refused unless allowed, and then gets its CORS headers), and, without a
token, only requests addressed to this machine by a loopback name (DNS rebinding)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware, request_header, send_json


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
    host = request_header(scope, b"host")
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


class LocalHostsOnly(HttpMiddleware):
    """Without a token, answer only requests addressed to a loopback name: guards an
    unauthenticated local server against DNS rebinding."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_local_host(request_header(scope, b"host")):
            await send_json(
                send,
                403,
                "this server has no API token, so it answers requests to localhost only; "
                "start it with --token-file to serve other host names",
            )
            return
        await self.app(scope, receive, send)


class OriginPolicy(HttpMiddleware):
    """Same-origin by default: a request a browser sends from another site's page (it
    carries an ``Origin`` header) is refused with 403 unless that site was allowed with
    ``--cors-origin``; allowed sites get the CORS headers (and preflight answers) they need."""

    ALLOW_METHODS = b"GET, POST, DELETE, OPTIONS"  # DELETE: forget a speaker session
    ALLOW_HEADERS = b"authorization, content-type"
    EXPOSE_HEADERS = b"retry-after"
    PREFLIGHT_MAX_AGE_S = b"600"

    def __init__(self, app: ASGIApp, allowed: Sequence[str] = ()):
        super().__init__(app)
        self.any_origin = "*" in allowed
        self.allowed = {normalize_origin(o) for o in allowed if o != "*"}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = request_header(scope, b"origin")
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
        if scope["method"] == "OPTIONS" and request_header(scope, b"access-control-request-method"):
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
