"""One label server per answers.csv: a lock held on the file itself for the server's
lifetime, so a second `emofuse label` on the same file stops at start-up instead of
serving progress and agreement that miss the first one's answers. No other file is
written.

The lock is an open-file-description (OFD) byte-range lock, far beyond any real end of
the file, taken without waiting. Not ``flock``: every append
(:func:`emofuse.corpus.answers.append_answer`) takes ``flock(LOCK_EX)`` on its own
descriptor, and a lifetime ``flock`` from another descriptor of the same process would
block it. Not a classic ``lockf`` either: those belong to the process, and the append's
``close()`` would drop it. On Linux, OFD locks and ``flock`` locks never conflict, and an
OFD lock lives as long as its own descriptor. Where OFD locks do not exist (macOS,
Windows) nothing is enforced.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

#: The locked byte: far past any answers file, so no read or append ever meets it.
LOCK_OFFSET = 1 << 62


class AnswersBusy(RuntimeError):
    """Another label server holds the answers file; the message names it."""


class AnswersLock:
    """The lifetime lock of one answers file: taken by :func:`lock_answers`, dropped by
    :meth:`release` (or when the process ends, however it ends)."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @property
    def enforced(self) -> bool:
        """False where the platform has no OFD locks (nothing is held)."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the description drops its OFD lock
            self._fd = None

    def __enter__(self) -> AnswersLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_answers(path: str | Path) -> AnswersLock:
    """Hold ``path`` (created empty if absent) for this server; :class:`AnswersBusy` when
    another server holds it. Never waits."""
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return AnswersLock(path, None)
    ofd_setlk = getattr(fcntl, "F_OFD_SETLK", None)
    if ofd_setlk is None:  # pragma: no cover - macOS, BSD
        return AnswersLock(path, None)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for an OFD lock), padding.
    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, LOCK_OFFSET, 1, 0)
    try:
        fcntl.fcntl(fd, ofd_setlk, request)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise AnswersBusy(
                f"{path}: another `emofuse label` is already serving this answers file; "
                "stop it first, or give every annotator a token for that one server (one "
                "server per answers.csv keeps progress and agreement right)"
            ) from None
        raise
    return AnswersLock(path, fd)
