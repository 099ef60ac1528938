"""Pool workers started through emofuse.workers run under every start method (a fork
server is the workers' parent on Python 3.14's Linux default) and exit with the command."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from emofuse.workers import with_parent_watch


def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_start_under_every_start_method(method):
    init, args = with_parent_watch()
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(2, mp_context=context, initializer=init, initargs=args) as pool:
        pids = set(pool.map(_pid, range(8)))
    assert pids and os.getpid() not in pids
