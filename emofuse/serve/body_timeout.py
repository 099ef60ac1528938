"""Slow uploads: a client that stops sending its request body mid-way gets a 408 instead
of holding a connection (and its buffered upload) forever."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware, answer_unless_started


class BodyStalled(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(
            408,
            f"the request body stalled: nothing arrived for {timeout_s:g} s",
            headers={"Connection": "close"},
        )


class BodyIdleTimeout(HttpMiddleware):
    """A client that stops sending its body mid-way gets 408 after ``timeout_s`` instead
    of holding a connection (and its buffered upload) forever."""

    def __init__(self, app: ASGIApp, timeout_s: float):
        super().__init__(app)
        self.timeout_s = timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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
