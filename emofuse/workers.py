"""Worker processes that never outlive the command that started them.

A pool worker whose parent is killed with SIGKILL would otherwise live on (holding an
encoder, hundreds of MB) until killed by hand. On Linux, ``PR_SET_PDEATHSIG`` asks the
kernel to send the worker SIGKILL when its parent dies; elsewhere a watchdog thread polls
the parent's pid. Every process pool in emofuse starts its workers through
:func:`die_with_parent` (directly, or by wrapping its own initializer with
:func:`with_parent_watch`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_POLL_S = 1.0


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(_POLL_S)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _watch_owner(owner_pid: int) -> None:
    while _alive(owner_pid):
        time.sleep(_POLL_S)
    os._exit(1)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit when ``parent_pid`` (default: the current parent) dies.

    On Linux the kernel signals when the *thread* that started this process ends, so a
    pool must be created by a thread that outlives it (every emofuse command creates its
    pools on the main thread)."""
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                # The parent may have died between fork and prctl: then nobody signals us.
                if os.getppid() != parent_pid:
                    os._exit(1)
                return
        except OSError:
            pass
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def die_with_owner(owner_pid: int) -> None:
    """Make this worker exit when the command ``owner_pid`` dies, whatever started it.

    The worker's parent is the command itself (fork, spawn) or a fork server that the
    command started (forkserver, Python 3.14's default on Linux): follow the real parent,
    and when that is not the command, also watch the command's pid."""
    die_with_parent()
    if os.getppid() != owner_pid:
        if not _alive(owner_pid):
            os._exit(1)
        threading.Thread(target=_watch_owner, args=(owner_pid,), daemon=True).start()


def _start_worker(owner_pid: int, initializer: Callable[..., Any] | None, args: tuple) -> None:
    die_with_owner(owner_pid)
    if initializer is not None:
        initializer(*args)


def with_parent_watch(
    initializer: Callable[..., Any] | None = None, initargs: tuple = ()
) -> tuple[Callable[..., None], tuple]:
    """``(initializer, initargs)`` for a process pool whose workers die with this process.

    ``ProcessPoolExecutor(initializer=..., initargs=...)`` takes the pair as it is::

        init, args = with_parent_watch(_worker_init, (spec,))
        ProcessPoolExecutor(max_workers=2, initializer=init, initargs=args)
    """
    return _start_worker, (os.getpid(), initializer, tuple(initargs))


#: At most this many loader processes per training or extraction process when chosen
#: automatically: reading and padding a batch takes a few per cent of a GPU's time for it.
MAX_AUTO_LOADER_WORKERS = 4


def auto_loader_workers(device_type: str, processes: int = 1) -> int:
    """Processes reading batches beside a model on ``device_type`` when not given: none on
    a CPU (the model uses every core and one reading thread keeps up with it); on an
    accelerator up to :data:`MAX_AUTO_LOADER_WORKERS`, leaving a core per model process
    (``processes`` of them share the machine)."""
    if device_type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_LOADER_WORKERS, (cores or 1) // max(1, processes) - 1))
