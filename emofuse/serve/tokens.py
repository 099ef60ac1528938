"""API tokens: read from a file (one per line, re-read when it changes, so a token can be
rotated without a restart) or from ``EMOFUSE_API_TOKEN``, and checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("emofuse.serve")

TOKEN_ENV = "EMOFUSE_API_TOKEN"
#: Shortest accepted token: a guessable token is no protection.
MIN_TOKEN_CHARS = 16
#: RFC 6750 "b64token": what may follow "Bearer " in an Authorization header.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: How often (seconds) the token file is checked for changes.
RELOAD_EVERY_S = 2.0


class TokenError(ValueError):
    """A token file or variable that cannot be used; the message names it and the fix."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_tokens(lines: Iterable[str], source: str, *, numbered: bool = True) -> list[str]:
    """Tokens from ``lines`` (blank lines and ``#`` comments skipped), validated;
    errors name ``source`` (and the line, if ``numbered``)."""
    tokens = []
    for number, raw in enumerate(lines, 1):
        token = raw.strip()
        if not token or token.startswith("#"):
            continue
        where = f"{source}, line {number}" if numbered else source
        if not _TOKEN_CHARS.fullmatch(token):
            raise TokenError(
                f"{where}: a token may only hold letters, digits and - . _ ~ + / = "
                "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenError(
                f"{where}: token of {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        tokens.append(token)
    if not tokens:
        raise TokenError(f"{source}: no token in it (one token per line)")
    return tokens


class Tokens:
    """The accepted tokens. ``match`` compares a candidate with every one of them in
    constant time and returns a short id of the matching token (for rate limits)."""

    def __init__(self, tokens: Iterable[str], *, path: Path | None = None):
        self._digests = [_digest(t) for t in tokens]
        if not self._digests:
            raise TokenError("no API token given")
        self.path = path
        self._stamp = self._file_stamp() if path is not None else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> Tokens:
        path = Path(path)
        return cls(_read_file(path), path=path)

    @classmethod
    def from_env(cls, value: str) -> Tokens:
        """``EMOFUSE_API_TOKEN``: one token, or several separated by commas or whitespace."""
        return cls(parse_tokens(re.split(r"[,\s]+", value), TOKEN_ENV, numbered=False))

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, candidate: str) -> str | None:
        """The id of the token equal to ``candidate``, or None. Every stored token is
        compared (no early exit) and only digests are compared, so the time taken does
        not depend on how much of a token was right."""
        self._maybe_reload()
        given = _digest(candidate)
        found: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(given, digest):
                found = digest
        return None if found is None else found.hex()[:12]

    # ------------------------------------------------------------ rotation

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self) -> None:
        """Re-read the token file when it changed. Fail closed: a file that is gone, or
        readable with no token left in it, revokes every token (all requests get 401).
        Only a file that cannot be read or parsed right now (a write in progress) keeps
        the previous tokens, logged at ERROR and retried at the next check."""
        if self.path is None or time.monotonic() - self._checked < RELOAD_EVERY_S:
            return
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                self._revoke_all(stamp, "the token file is gone")
                return
            except (OSError, UnicodeDecodeError) as err:
                log.error(
                    "%s: cannot read the token file (%s); still accepting the previous "
                    "tokens until it can be read",
                    self.path,
                    err,
                )
                return  # the stamp is not stored: read again at the next check
            lines = text.splitlines()
            if not any(line.strip() and not line.strip().startswith("#") for line in lines):
                self._revoke_all(stamp, "no token left in it")
                return
            try:
                digests = [_digest(t) for t in parse_tokens(lines, str(self.path))]
            except TokenError as err:
                log.error("%s; still accepting the previous tokens until it is fixed", err)
                return
            self._digests, self._stamp = digests, stamp
            log.warning("%s changed: now accepting %d token(s)", self.path, len(digests))

    def _revoke_all(self, stamp: tuple[int, int, int] | None, why: str) -> None:
        self._digests, self._stamp = [], stamp
        log.error("%s: %s; every request is refused (401) until it holds a token", self.path, why)


def _read_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenError(f"{path}: no such token file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"{path}: cannot read the token file: {err}") from None
    return parse_tokens(text.splitlines(), str(path))


def load_tokens(
    token_file: str | Path | None, environ: dict[str, str] | None = None
) -> Tokens | None:
    """Tokens from ``--token-file`` if given, else from ``EMOFUSE_API_TOKEN``, else None."""
    if token_file is not None:
        return Tokens.from_file(token_file)
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
    if value.strip():
        return Tokens.from_env(value)
    return None
