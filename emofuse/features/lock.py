"""One run at a time fills an encoder's folder of the feature store.

Two runs filling the same folder (two `emofuse extract` with the same encoder, or a
training beside an extraction) would compute the same vectors twice and then collide on
shard names. So a run holds ``<folder>/run.lock`` while it fills the folder: a small JSON
file with its pid, host and start time, made with ``O_EXCL``. Another run that finds it
stops at once with one line naming that pid. A lock left by a run that is gone (same
host, no such process) is stale: it is taken over. The ranks of one ``accelerate launch``
run share the folder as one run: rank 0 takes the lock for all of them and its answer
reaches every rank (:meth:`emofuse.features.compute.Ranks.broadcast`). A folder that
cannot be written (a read-only store, a full disk) takes no lock: the run only reads it,
and a write it then needs fails with the store's own message.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emofuse.features.compute import Ranks
from emofuse.features.io import FeatureStoreError

LOCK_FILE = "run.lock"
#: Errors that say the folder cannot take a file: no lock, the run only reads.
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


class StoreBusyError(FeatureStoreError):
    """Another run is filling the same encoder folder of the feature store."""


@contextlib.contextmanager
def run_lock(directory: Path, ranks: Ranks | None = None) -> Iterator[None]:
    """Hold ``directory``'s run lock for this run (all its ranks) inside the block, or
    raise :class:`StoreBusyError` on every rank, before any work, when another run holds
    it."""
    ranks = ranks or Ranks()
    held, problem = None, None
    if ranks.is_main:
        try:
            held = _acquire(Path(directory) / LOCK_FILE)
        except StoreBusyError as err:
            problem = str(err)
    problem = ranks.broadcast(problem)
    if problem is not None:
        raise StoreBusyError(problem)
    try:
        yield
    finally:
        if held is not None:
            _release(held)


def _acquire(path: Path) -> Path | None:
    """Make the lock file (taking over a stale one); None when the folder cannot take it."""
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for _ in range(3):  # a stale lock removed by another run at the same moment: try again
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read(path)
            if _alive(holder) and not _abandoned(path, holder):
                raise StoreBusyError(_busy_message(path, holder)) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its run is gone
            continue
        except OSError as err:
            if err.errno in _CANNOT_WRITE:
                return None
            raise
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:  # a full disk: no half-written lock left to block later runs
            with contextlib.suppress(OSError):
                path.unlink()
            if err.errno in _CANNOT_WRITE:
                return None
            raise
        return path
    raise StoreBusyError(_busy_message(path, _read(path)))


def _release(path: Path) -> None:
    """Remove the lock if it is still this process's."""
    if _read(path).get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def _read(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being written this instant, or damaged
    return found if isinstance(found, dict) else {}


#: An unreadable lock older than this was left by a run that died while writing it.
UNREADABLE_LOCK_S = 30.0


def _abandoned(path: Path, holder: dict[str, Any]) -> bool:
    """A lock no live run holds although :func:`_alive` cannot rule it out: one naming this
    very process (a pid reused after a crash, e.g. pid 1 in a container: this process is
    only now taking the lock), or an unreadable one older than :data:`UNREADABLE_LOCK_S`."""
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return True
    if holder:
        return False
    try:
        return time.time() - path.stat().st_mtime > UNREADABLE_LOCK_S
    except OSError:
        return True  # gone already


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the run that wrote ``holder`` may still be going: its process exists on
    this host, or it ran elsewhere (which cannot be checked), or the file is unreadable
    (a run writing it now)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _busy_message(path: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "unknown")
    where = "" if holder.get("host") in (None, socket.gethostname()) else f" on {holder['host']}"
    started = f", started {holder['started']}" if holder.get("started") else ""
    return (
        f"{path.parent}: another run (pid {pid}{where}{started}) is filling this encoder's "
        "folder of the feature store; wait for it to end (its vectors are then reused), or, "
        f"if no such run is going, delete {path}"
    )
