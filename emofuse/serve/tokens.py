"""API tokens: read from a file (one per line, re-read when it changes, so a token can be
rotated without a restart) or from ``EMOFUSE_API_TOKEN``, and checked in constant time.

A line of the file may name the token's holder before it (``alice TOKEN``): the labelling
page records answers under that name. A bare token is named by its digest
(``token-1a2b3c4d``, :func:`bare_token_name`), so two people with bare tokens never answer
as one annotator. A name that looks like a token (``TOKEN_A TOKEN_B``: two tokens on one
line) and a token listed twice are refused, so a secret never becomes a name in
answers.csv."""

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
#: What a holder's name may hold: letters (any script), digits and - . _ @
_NAME_CHARS = re.compile(r"[^\W_][\w\-.@]*")
MAX_NAME_CHARS = 64


class TokenError(ValueError):
    """A token file or variable that cannot be used; the message names it and the fix."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_tokens(lines: Iterable[str], source: str, *, numbered: bool = True) -> list[str]:
    """Tokens from ``lines`` (blank lines and ``#`` comments skipped), validated;
    errors name ``source`` (and the line, if ``numbered``)."""
    return [token for _, token in parse_named_tokens(lines, source, numbered=numbered)]


def parse_named_tokens(
    lines: Iterable[str], source: str, *, numbered: bool = True
) -> list[tuple[str | None, str]]:
    """``(holder, token)`` pairs from ``lines``: each line is ``TOKEN`` (holder None) or
    ``NAME TOKEN``; blank lines and ``#`` comments are skipped. A token listed twice, or a
    name shaped like a token, is a :class:`TokenError`."""
    pairs: list[tuple[str | None, str]] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}" if numbered else source
        fields = line.split()
        name, token = (None, line) if len(fields) != 2 else (fields[0], fields[1])
        if name is not None and looks_like_token(name):
            raise TokenError(
                f"{where}: two tokens on one line? The name before the token looks like a "
                f"token itself ({MIN_TOKEN_CHARS} or more token characters); put each token "
                "on its own line, or give a shorter name ('alice TOKEN')"
            )
        if name is not None and not is_holder_name(name):
            raise TokenError(f"{where}: {NAME_RULE}, e.g. 'alice TOKEN'")
        if not _TOKEN_CHARS.fullmatch(token):
            raise TokenError(
                f"{where}: a token may only hold letters, digits and - . _ ~ + / = "
                "(a line is TOKEN or NAME TOKEN; e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenError(
                f"{where}: token of {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        digest = _digest(token)
        if digest in seen:
            again = f"the same token as line {seen[digest]}" if numbered else "a token twice"
            raise TokenError(f"{where}: {again}; list each token once (it names one annotator)")
        seen[digest] = number
        pairs.append((name, token))
    if not pairs:
        raise TokenError(f"{source}: no token in it (one token per line)")
    return pairs


#: What :func:`is_holder_name` accepts, for error messages.
NAME_RULE = (
    f"a name may only hold letters, digits and - . _ @ (starting with a letter or digit; "
    f"at most {MAX_NAME_CHARS})"
)


def looks_like_token(name: str) -> bool:
    """Could ``name`` be a token (at least :data:`MIN_TOKEN_CHARS` token characters)?"""
    return len(name) >= MIN_TOKEN_CHARS and _TOKEN_CHARS.fullmatch(name) is not None


def bare_token_name(digest: bytes) -> str:
    """The annotator name of a token given without one: ``token-`` and the first 8 hex
    digits of its SHA-256 (never the token itself)."""
    return f"token-{digest.hex()[:8]}"


def is_holder_name(name: str) -> bool:
    """Is ``name`` usable as a token holder's (an annotator's) name?"""
    return len(name) <= MAX_NAME_CHARS and _NAME_CHARS.fullmatch(name) is not None


class Tokens:
    """The accepted tokens. ``match`` compares a candidate with every one of them in
    constant time and returns a short id of the matching token (for rate limits);
    ``holder`` returns the name it was given under (:func:`bare_token_name` when none).

    ``tokens`` holds tokens, or ``(holder, token)`` pairs (holder None: a bare token)."""

    def __init__(self, tokens: Iterable[str | tuple[str | None, str]], *, path: Path | None = None):
        self._set([(None, t) if isinstance(t, str) else t for t in tokens])
        if not self._entries:
            raise TokenError("no API token given")
        self.path = path
        self._stamp = self._file_stamp() if path is not None else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _set(self, pairs: list[tuple[str | None, str]]) -> None:
        # One assignment, so a request never sees the digests of one file and the names
        # of another while the file is re-read.
        digests = [(_digest(token), name) for name, token in pairs]
        self._entries = tuple((d, bare_token_name(d) if n is None else n) for d, n in digests)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokens:
        path = Path(path)
        return cls(_read_file(path), path=path)

    @classmethod
    def from_env(cls, value: str) -> Tokens:
        """``EMOFUSE_API_TOKEN``: one token, or several separated by commas or whitespace."""
        return cls(parse_tokens(re.split(r"[,\s]+", value), TOKEN_ENV, numbered=False))

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, candidate: str) -> str | None:
        """The id of the token equal to ``candidate``, or None. Every stored token is
        compared (no early exit) and only digests are compared, so the time taken does
        not depend on how much of a token was right."""
        found = self._find(candidate)
        return None if found is None else found[0].hex()[:12]

    def holder(self, candidate: str) -> str | None:
        """The name ``candidate`` was given under in the token file
        (:func:`bare_token_name` for a bare token), or None when it is not an accepted token. Constant time, as ``match``."""
        found = self._find(candidate)
        return None if found is None else found[1]

    def _find(self, candidate: str) -> tuple[bytes, str] | None:
        self._maybe_reload()
        given = _digest(candidate)
        found: tuple[bytes, str] | None = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry[0]):
                found = entry
        return found

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
                pairs = parse_named_tokens(lines, str(self.path))
            except TokenError as err:
                log.error("%s; still accepting the previous tokens until it is fixed", err)
                return
            self._set(pairs)
            self._stamp = stamp
            log.warning("%s changed: now accepting %d token(s)", self.path, len(pairs))

    def _revoke_all(self, stamp: tuple[int, int, int] | None, why: str) -> None:
        self._set([])
        self._stamp = stamp
        log.error("%s: %s; every request is refused (401) until it holds a token", self.path, why)


def _read_file(path: Path) -> list[tuple[str | None, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenError(f"{path}: no such token file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"{path}: cannot read the token file: {err}") from None
    return parse_named_tokens(text.splitlines(), str(path))


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
