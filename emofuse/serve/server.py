"""Running the app under uvicorn with bounds on connections: a deadline for request
headers (uvicorn has none, so idle or half-open connections were kept forever), a
keep-alive timeout, a connection limit, a header size limit, and optional TLS."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServerSettings:
    """How uvicorn listens; every field is a flag of `emofuse serve`."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: A connection must deliver a request's headers this many seconds after it opens
    #: (or after the previous response), else it is closed.
    header_timeout_s: float = 10.0
    #: An idle keep-alive connection is closed after this many seconds.
    keep_alive_timeout_s: int = 5
    #: Most connections (and requests) at once; more get 503 at once.
    max_connections: int = 200
    #: Largest request head (request line + headers), in bytes.
    max_header_bytes: int = 16 * 1024
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"ServerSettings.port must be in 1..65535, not {self.port}")
        for name in ("header_timeout_s", "keep_alive_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"ServerSettings.{name} must be positive, not {getattr(self, name)}"
                )
        for name in ("max_connections", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"ServerSettings.{name} must be at least 1, not {getattr(self, name)}"
                )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "ServerSettings.ssl_certfile and ServerSettings.ssl_keyfile go together: give both"
            )
        for name in ("ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"ServerSettings.{name}: {path}: no such file")

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"


def header_timeout_protocol(timeout_s: float, max_header_bytes: int | None = None) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all
    arrived ``timeout_s`` after it opened or after its previous response, and answering
    431 to a request head (request line + headers) over ``max_header_bytes``, whether it
    came in one write or in many (h11's own limit sees only a head still incomplete, so a
    large head sent at once went through, and one sent in pieces got a 400 or a reset)."""
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def handle_events(self) -> None:
            if self._head_too_large():
                return
            super().handle_events()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm_header_timer()  # waiting for (the rest of) a request's headers
            else:
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _head_too_large(self) -> bool:
            if max_header_bytes is None or self.conn.their_state is not h11.IDLE:
                return False
            buffered, _ = self.conn.trailing_data  # the next request's head, so far
            end = _HEAD_END.search(buffered)
            size = end.end() if end else len(buffered)
            if size <= max_header_bytes:
                return False
            self._disarm_header_timer()
            self.transport.write(head_too_large_answer(max_header_bytes))
            self.transport.close()
            return True

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11Protocol


_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a request head


def head_too_large_answer(max_header_bytes: int) -> bytes:
    """The whole 431 response (JSON detail) to a request head over the limit."""
    body = json.dumps(
        {
            "detail": f"request line and headers over {max_header_bytes // 1024 or 1} KB "
            f"({max_header_bytes} bytes), this server's limit (--max-header-kb)"
        }
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "cache-control: no-store\r\n"
        "x-content-type-options: nosniff\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def uvicorn_config(app: Any, settings: ServerSettings) -> Any:
    """The uvicorn.Config for ``app``: our access log instead of uvicorn's (which logs
    client addresses and full paths), and the connection bounds above."""
    import uvicorn

    from emofuse.serve.logging import log_config

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=header_timeout_protocol(settings.header_timeout_s, settings.max_header_bytes),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        log_config=log_config(settings.log_level),
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


def serve(app: Any, settings: ServerSettings) -> None:
    import uvicorn

    uvicorn.Server(uvicorn_config(app, settings)).run()
