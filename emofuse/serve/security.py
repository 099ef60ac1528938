"""What makes the service safe on a shared network: bearer tokens, a per-client rate limit,
same-origin by default, browser-hardening headers, no caching, slow-upload bounds and an
access log that holds no personal data. :func:`install_security` wraps an app in that
middleware (:mod:`~emofuse.serve.auth_gate`, :mod:`~emofuse.serve.host_origin`,
:mod:`~emofuse.serve.security_headers`, :mod:`~emofuse.serve.body_timeout`,
:mod:`~emofuse.serve.access_log`), so the routes themselves know nothing of it, and
declares the token in the app's OpenAPI schema (:func:`document_security`).

The middleware is imported when an app is secured, not with this module: the CLI reads
:class:`SecuritySettings` for its flags, and ``emofuse --help`` stays fast."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emofuse.serve.tokens import Tokens

#: scheme://host[:port], nothing more.
_ORIGIN = re.compile(r"https?://[^/?#@\s]+")


@dataclass(frozen=True)
class SecuritySettings:
    """How the service protects itself and its users; the CLI fills it from flags."""

    #: Accepted bearer tokens; None serves without authentication (loopback only, unless
    #: the operator said --allow-unauthenticated).
    tokens: Tokens | None = None
    #: Other sites whose pages may call the API ("*" = any); same-origin only by default.
    cors_origins: tuple[str, ...] = ()
    #: Requests a minute per client (per token, or per address without one); 0 = no limit.
    rate_per_minute: float = 120.0
    #: Requests a client may make at once before the per-minute rate applies.
    rate_burst: int = 30
    #: Longest wait for the next piece of a request body before a 408 (slow uploads).
    body_idle_timeout_s: float = 30.0
    #: Log one line per request: method, route, status, size, latency.
    access_log: bool = True
    #: Answer only requests addressed to this machine by a loopback name (Host header
    #: localhost / 127.x / ::1): with no token, a web page whose domain was re-pointed at
    #: 127.0.0.1 ("DNS rebinding") could otherwise use the service from a browser.
    local_hosts_only: bool = False

    def __post_init__(self) -> None:
        if self.rate_per_minute < 0:
            raise ValueError(
                f"SecuritySettings.rate_per_minute must be >= 0, not {self.rate_per_minute}"
            )
        if self.rate_burst < 1:
            raise ValueError(
                f"SecuritySettings.rate_burst must be at least 1, not {self.rate_burst}"
            )
        if not self.body_idle_timeout_s > 0:
            raise ValueError(
                "SecuritySettings.body_idle_timeout_s must be positive, "
                f"not {self.body_idle_timeout_s}"
            )
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"SecuritySettings.cors_origins: {origin!r} is not an origin "
                    "(scheme://host[:port], e.g. https://lab.example.org)"
                )


def install_security(app: Any, settings: SecuritySettings) -> None:
    """Wrap ``app`` (FastAPI/Starlette, before it starts) in the security middleware and
    document the token and the rate limit in its OpenAPI schema. Call it after the routes
    are added."""
    from emofuse.serve.access_log import AccessLog
    from emofuse.serve.auth_gate import RequestGate
    from emofuse.serve.body_timeout import BodyIdleTimeout
    from emofuse.serve.host_origin import LocalHostsOnly, OriginPolicy
    from emofuse.serve.ratelimit import RateLimiter
    from emofuse.serve.security_headers import SecurityHeaders

    keep_uploads_in_memory()
    # The last added runs first: access log > headers > host > origin > token and rate
    # limit > body timeout > the app, so every refusal is logged and carries the headers.
    app.add_middleware(BodyIdleTimeout, timeout_s=settings.body_idle_timeout_s)
    limiter = (
        RateLimiter(settings.rate_per_minute, settings.rate_burst)
        if settings.rate_per_minute > 0
        else None
    )
    app.add_middleware(RequestGate, tokens=settings.tokens, limiter=limiter)
    app.add_middleware(OriginPolicy, allowed=settings.cors_origins)
    if settings.local_hosts_only:
        app.add_middleware(LocalHostsOnly)
    app.add_middleware(SecurityHeaders)
    if settings.access_log:
        app.add_middleware(AccessLog, routes=app.router.routes)
    document_security(app, settings)
    app.state.security = settings


def keep_uploads_in_memory() -> None:
    """Starlette spools uploads over 1 MB to a temporary file; a voice must never touch the
    disk, so keep every part in memory (the body limit still bounds the total)."""
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = 2**62


def document_security(app: Any, settings: SecuritySettings) -> None:
    """Declare the bearer token (and the 401/429 answers) in the schema, so the docs page
    offers an Authorize button and clients know what to send."""
    from emofuse.serve.auth_gate import HEALTH_PATH

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
