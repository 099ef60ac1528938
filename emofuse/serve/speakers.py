"""The service's speaker sessions: running speaker statistics, in memory only.

A request to ``/predict`` or ``/predict/batch`` may name a ``speaker`` session (any
opaque id the client picks: a caller, a channel, a meeting seat). For a bundle that adapts
to speakers, the server keeps that session's running statistics (count, per-dimension
mean and spread of the speech vectors: :class:`~emofuse.head.speaker_stats.Moments`, no
audio, no text, no labels) and adds each clip to them BEFORE scoring it, so the first clip
of a session is scored with the statistics of one clip (which the shrinkage holds close to
the training set's) and adaptation strengthens with every clip
(:mod:`emofuse.predict.adapt`). The answers say how many clips that was
(``speaker_clips``).

The statistics live in this process's memory only: never written to disk, never logged
(the access log names the route template, never the id). They are bounded in number (the
least recently used session is forgotten when ``max_sessions`` is reached) and expire
after ``idle_ttl_s`` without a request; ``DELETE /speakers/{id}`` forgets one at once; a
restart forgets all. Memory is about 16 bytes per speech-vector value per session.

Thread safety: the session table has one lock, held only to look up, create, evict or
delete; each session has its own, held while its clips are scored, so the clips of one
session are added in the order they are scored and two sessions never wait for each other.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emofuse.head.speaker_stats import Moments

#: Sessions kept at once by default (the least recently used is forgotten beyond).
DEFAULT_MAX_SESSIONS = 10_000
#: A session unused this long (seconds) is forgotten.
DEFAULT_IDLE_TTL_S = 3600.0
#: Longest accepted session id.
MAX_ID_CHARS = 128
#: Added to the answers when a request names a speaker and the model does not adapt.
SPEAKER_NOT_USED = (
    "this model does not adapt to speakers (trained with speaker normalisation off): "
    "the speaker field was not used"
)


class SpeakerIdError(ValueError):
    """A session id the service does not accept."""


def check_speaker_id(value: str) -> str:
    """The id, stripped; refused when empty, too long, or with control characters."""
    name = value.strip()
    if not name:
        raise SpeakerIdError("a speaker session id must not be empty")
    if len(name) > MAX_ID_CHARS:
        raise SpeakerIdError(
            f"a speaker session id has at most {MAX_ID_CHARS} characters, not {len(name)}"
        )
    if not name.isprintable():
        raise SpeakerIdError("a speaker session id must not hold control characters")
    if "/" in name or "%" in name:  # DELETE /speakers/{id} must be able to name it
        raise SpeakerIdError("a speaker session id must not hold '/' or '%'")
    return name


def request_speaker(value: str | None) -> str | None:
    """A request's ``speaker`` field, checked (422 when refused), or None."""
    from emofuse.serve.schemas import RequestProblem  # on use: `emofuse --help` stays light

    if value is None:
        return None
    try:
        return check_speaker_id(value)
    except SpeakerIdError as err:
        raise RequestProblem(422, f"field 'speaker': {err}") from None


@dataclass
class _Session:
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the running statistics by speaker name (one entry: the session's id)
    stats: dict[str, Moments] = field(default_factory=dict)
    last_used: float = 0.0
    #: requests holding the session now (never evicted or expired while above 0)
    users: int = 0


class SpeakerSessions:
    """Running statistics by session id: bounded (LRU), expiring, in memory only."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_ttl_s: float = DEFAULT_IDLE_TTL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {max_sessions}")
        if not idle_ttl_s > 0:
            raise ValueError(f"idle_ttl_s must be positive, not {idle_ttl_s}")
        self.max_sessions = int(max_sessions)
        self.idle_ttl_s = float(idle_ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            self._expire(self._clock())
            return name in self._sessions

    @contextmanager
    def use(self, name: str) -> Iterator[MutableMapping[str, Moments]]:
        """The session's running statistics (created when new), held for the caller alone
        until the ``with`` block ends; the engine adds the scored clips to them."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(name)
            if session is None:
                session = self._sessions[name] = _Session()
            session.last_used = now
            session.users += 1
            self._sessions.move_to_end(name)
            self._evict()
        try:
            with session.lock:
                yield session.stats
        finally:
            with self._lock:
                session.users -= 1
                session.last_used = self._clock()
                if self._sessions.get(name) is session:  # most recently used again
                    self._sessions.move_to_end(name)

    def forget(self, name: str) -> bool:
        """Drop a session; whether there was one (an expired one counts as gone, and so
        does an id no session can have)."""
        try:
            name = check_speaker_id(name)
        except SpeakerIdError:
            return False
        with self._lock:
            self._expire(self._clock())
            return self._sessions.pop(name, None) is not None

    def _evict(self) -> None:
        """Forget the least recently used sessions beyond ``max_sessions``, never one a
        request holds (its clips would be added to statistics nobody keeps; the table may
        then stay over the bound until those requests end)."""
        excess = len(self._sessions) - self.max_sessions
        if excess <= 0:
            return
        for name in [n for n, s in self._sessions.items() if s.users == 0][:excess]:
            del self._sessions[name]

    def _expire(self, now: float) -> None:
        """Drop sessions idle longer than the TTL (the oldest are first in the table),
        never one a request holds."""
        for name, session in list(self._sessions.items()):
            if now - session.last_used <= self.idle_ttl_s:
                break
            if session.users == 0:
                del self._sessions[name]
