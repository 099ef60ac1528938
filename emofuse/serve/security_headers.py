"""The hardening headers on every answer of the service (its middleware's own refusals
included): no caching, no sniffing, no referrer, no framing, and a Content Security
Policy without inline script."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware

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


class SecurityHeaders(HttpMiddleware):
    """No caching, no sniffing, no referrer, no framing, and a CSP without inline script,
    on every answer (the middleware's own refusals included)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message = {**message, "headers": kept + list(SECURITY_HEADERS)}
            await send(message)

        await self.app(scope, receive, send_with_headers)
