"""No server path in any answer.

Messages are written for the command line, where naming a file helps (a bundle's folder,
an encoder's model folder). In an HTTP answer the same words tell a client where the
server keeps its files. :class:`ServerPathsMiddleware` replaces the server's own folders
in every JSON answer, however the words got there (an error detail, a warning, a batch
item): the model's folder becomes ``<model>``; the working, home and temporary folders and
the Python installation become ``<server>``. A client's own file names (uploads are
named by their base name) are left as they are.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.asgi import HttpMiddleware

MODEL_WORD = "<model>"
SERVER_WORD = "<server>"


def server_folders(predictor: Any = None) -> dict[str, str]:
    """The folders no answer may show, each with the word that replaces it."""
    folders: dict[str, str] = {}
    places = [Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.base_prefix)]
    for where in (Path.cwd, Path.home):
        with contextlib.suppress(OSError, RuntimeError, KeyError):  # no cwd, no HOME
            places.append(where())
    for place in places:
        for form in {str(place), str(place.resolve())}:
            folders[form] = SERVER_WORD
    model = getattr(predictor, "path", None)
    if isinstance(model, str | Path) and str(model):
        for form in {str(model), str(Path(model).absolute()), str(Path(model).resolve())}:
            folders[form] = MODEL_WORD
    return folders


class PathRedactor:
    """Replaces each folder of ``folders`` (and anything under it) in a text by its word;
    the longest folder wins, and a folder matches only as a whole name."""

    def __init__(self, folders: Mapping[str, str]):
        self.words = {f.rstrip("/\\"): w for f, w in folders.items() if len(Path(f).parts) > 1}
        names = sorted(self.words, key=len, reverse=True)
        self.pattern = (
            re.compile("(" + "|".join(re.escape(n) for n in names) + r")(?![\w.-])")
            if names
            else None
        )

    def text(self, value: str) -> str:
        if self.pattern is None:
            return value
        return self.pattern.sub(lambda found: self.words[found.group(1)], value)

    def json_body(self, body: bytes) -> bytes:
        """A JSON body with every string redacted (the same bytes when nothing was)."""
        if self.pattern is None:
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        redacted = _walk(data, self.text)
        if redacted == data:
            return body
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode()


def _walk(value: Any, fix: Any) -> Any:
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [_walk(v, fix) for v in value]
    if isinstance(value, dict):
        return {fix(k): _walk(v, fix) for k, v in value.items()}
    return value


def _is_json(start: Message) -> bool:
    for name, value in start.get("headers") or ():
        if bytes(name).lower() == b"content-type":
            kind = bytes(value).split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


class ServerPathsMiddleware(HttpMiddleware):
    """Every JSON answer passes through :class:`PathRedactor` (its length recomputed)."""

    def __init__(self, app: ASGIApp, redactor: PathRedactor):
        super().__init__(app)
        self.redactor = redactor

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def redacting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and _is_json(message):
                start = message  # held until the body is whole
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = self.redactor.json_body(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers") or ()
                       if bytes(k).lower() != b"content-length"]  # fmt: skip
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, redacting_send)
