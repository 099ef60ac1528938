"""The scan loop every corpus reader shares: the per-file work run in parallel chunks
with a progress bar, and :class:`CorpusError` for a corpus that cannot be read at all.

A corpus may hold ~450k clips, so the per-file work (one JSON parse, one audio header
read) runs in worker processes over chunks of files: no process or task per file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any

from emofuse.corpus.files import Problem
from emofuse.corpus.rows import Row, build_result, with_stem_ids
from emofuse.corpus.table import ScanResult
from emofuse.workers import with_parent_watch

#: What the work on one chunk of files returns.
ChunkResult = tuple[list[Row], list[Problem]]

#: Files per chunk handed to a worker: large enough that process hand-off costs little
#: next to the ~50 µs of work per file, small enough for a lively progress bar.
MAX_CHUNK = 1000
#: Below this many files, starting worker processes costs more than it saves.
MIN_PARALLEL = 200


class CorpusError(ValueError):
    """A corpus that cannot be read at all (as opposed to a bad file inside it)."""


def corpus_dir(root: str | Path, expected: str) -> Path:
    """``root`` as an absolute folder, or a :class:`CorpusError` saying what was expected
    there (e.g. "the dataset-466 folder")."""
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected {expected})")
    return path


def progress_bar(*, total: int | None, desc: str, progress: bool, unit: str = "file") -> Any:
    """A tqdm bar on stderr; off when ``progress`` is False or stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not (progress and sys.stderr.isatty()),
        dynamic_ncols=True,
        leave=False,
    )


def resolve_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def run_chunked(
    work: Callable[[list], ChunkResult],
    items: Sequence,
    *,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "scanning",
) -> ChunkResult:
    """Apply ``work`` (a module-level function taking a list of items, or a
    ``functools.partial`` of one: it must pickle) to chunks of ``items``, in worker
    processes when ``workers > 1``; rows come back in item order."""
    workers = resolve_workers(workers)
    items = list(items)
    if not items:
        return [], []
    size = max(1, min(MAX_CHUNK, -(-len(items) // (workers * 8))))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    results: list[ChunkResult | None] = [None] * len(chunks)
    if workers == 1 or len(chunks) == 1 or len(items) < MIN_PARALLEL:
        with progress_bar(total=len(items), desc=desc, progress=progress) as bar:
            for i, chunk in enumerate(chunks):
                results[i] = work(chunk)
                bar.update(len(chunk))
    else:
        # The pool forks before the bar exists: no tqdm monitor thread in the children.
        # Its workers die with this process, even when it is SIGKILLed.
        initializer, initargs = with_parent_watch()
        with ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)), initializer=initializer, initargs=initargs
        ) as pool:
            futures = {pool.submit(work, chunk): i for i, chunk in enumerate(chunks)}
            try:
                with progress_bar(total=len(items), desc=desc, progress=progress) as bar:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = future.result()
                        bar.update(len(chunks[i]))
            except BrokenProcessPool as err:
                raise CorpusError(
                    f"a scan worker process died ({err}); out of memory? try fewer workers"
                ) from err
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: stop promptly
                raise
    rows: list[Row] = []
    problems: list[Problem] = []
    for chunk_rows, chunk_problems in results:  # type: ignore[misc]
        rows.extend(chunk_rows)
        problems.extend(chunk_problems)
    return rows, problems


def guarded(one: Callable[[Any], ChunkResult], item: Any, file: str) -> ChunkResult:
    """Run the work on one item; an unexpected error becomes a problem row, so one odd
    file never stops a scan of hundreds of thousands."""
    try:
        return one(item)
    except Exception as err:  # deliberately broad: report and go on
        return [], [(file, f"unreadable-file: {type(err).__name__}: {err}")]


def _guarded_each(one: Callable[[Any], ChunkResult], items: list) -> ChunkResult:
    rows: list[Row] = []
    problems: list[Problem] = []
    for item in items:
        r, p = guarded(one, item, item[0])
        rows.extend(r)
        problems.extend(p)
    return rows, problems


def scan_each(
    one: Callable[[Any], ChunkResult],
    items: Sequence,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> ChunkResult:
    """Run ``one`` (a module-level function) on every item, in parallel chunks, each
    :func:`guarded` (``item[0]`` names the item's file): the scan of readers that read one
    clip at a time."""
    return run_chunked(
        partial(_guarded_each, one),
        items,
        workers=workers,
        progress=progress,
        desc="reading headers",
    )


def scan_pairs(
    one: Callable[[Any], ChunkResult],
    items: list,
    problems: list[Problem],
    fallback_ids: Callable[[Sequence[Row], int], Sequence[str]],
    *,
    workers: int | None,
    progress: bool,
) -> ScanResult:
    """Run ``one`` over ``items`` (in worker processes when many), give colliding stems
    the first unique id of ``fallback_ids(rows, i)``, and collect every problem."""
    rows, scan_problems = scan_each(one, items, workers=workers, progress=progress)
    rows = with_stem_ids(rows, lambda i: fallback_ids(rows, i))
    return build_result(rows, problems + scan_problems)
