"""Run a grid: :func:`run_grid` strings the steps together, corpus -> splits (or folds)
-> each cell's training rows -> features once per encoder -> one trained head per cell
-> results.csv, tables, plots and report.md under the output folder. Each step has its
own module, and they run in this order:

1. :mod:`~emofuse.experiments.corpus`: the corpus is read once (``source = "demo"``
   makes the demo corpus in ``<output>/demo-corpus``).
2. :mod:`~emofuse.experiments.split_views`: every split strategy is applied once (CV
   strategies give one split per fold), checked for leakage and written to
   ``<output>/splits/`` so any figure can be traced to its test part.
3. :mod:`~emofuse.experiments.plan`: the cells and their ids; those not yet in
   results.csv are still to run.
4. :mod:`~emofuse.experiments.samples`: their training rows are sampled (cheap, table
   only; order ``diverse`` first reads the vectors of its splits' train parts), so
   features are extracted only for clips some cell uses.
5. :mod:`~emofuse.experiments.vectors`: the vectors those clips need, cached in memory
   from one feature store (``<output>/features`` unless ``encoders.store`` says
   otherwise).
6. :mod:`~emofuse.experiments.cells`: cells train heads on the cached vectors (in
   parallel processes with ``output.jobs``); :mod:`~emofuse.experiments.results`: each
   finished cell appends one flushed row to ``results.csv``. A rerun skips every cell
   whose id is already there, so an interrupted grid resumes and a finished grid
   returns at once.
7. :mod:`~emofuse.experiments.report`: tables, plots and report.md, recorded in the
   returned :class:`~emofuse.experiments.grid_run.GridRun`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from emofuse.experiments.cells import CellTask, make_tasks, train_cells
from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.corpus import guard_corpus_identity, load_corpus
from emofuse.experiments.grid_run import GridRun
from emofuse.experiments.plan import plan_cells
from emofuse.experiments.report import reuse_report, write_outputs
from emofuse.experiments.results import RESULTS_FILE, ResultsFile, result_row, write_cell_metrics
from emofuse.experiments.samples import sample_cells
from emofuse.experiments.split_views import make_splits, write_split
from emofuse.experiments.vectors import FEATURES_DIR, fill_cell_vectors

__all__ = ["GridRunError", "run_grid"]


def run_grid(
    config: GridConfig,
    *,
    output_dir: str | Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
    write_reports: bool = True,
    max_cells: int | None = None,
) -> GridRun:
    """Run every unfinished cell of ``config``; write results, tables, plots, report.

    ``max_cells`` stops after that many cells (for tests and benchmarks; the rest run on
    the next call). Cells that raise are reported in ``GridRun.failed`` and left out of
    results.csv, so the next call retries them.
    """
    out = Path(output_dir).expanduser().resolve() if output_dir else config.output_dir
    jobs = jobs or config.output.jobs
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    loaded = load_corpus(config, out, progress=progress)
    assert loaded is not None
    table, labels = loaded
    guard_corpus_identity(table, out)
    timings["corpus"] = time.perf_counter() - clock

    clock = time.perf_counter()
    views = {view.key: view for view in make_splits(table, config)}
    folds: dict[str, list[str]] = {s: [] for s in config.split.strategies}
    for view in views.values():
        write_split(table, view, out)
        folds[view.strategy].append(view.fold)
    cells = plan_cells(config, folds)
    ids = [cell.cell_id(config) for cell in cells]
    results_file = ResultsFile(out / RESULTS_FILE)
    done = results_file.finished()
    todo = [(c, i) for c, i in zip(cells, ids, strict=True) if i not in done]
    if max_cells is not None:
        todo = todo[:max_cells]
    store = config.resolve(config.encoders.store) if config.encoders.store else out / FEATURES_DIR
    sampled, notes = sample_cells(config, table, views, todo, store_dir=store, progress=progress)
    timings["split+plan"] = time.perf_counter() - clock

    failed: list[tuple[str, str]] = []
    if todo:
        clock = time.perf_counter()
        needs = [
            (cell, sampled[cid], views[cell.split_key].with_held_out(sampled[cid]))
            for cell, cid in todo
        ]
        cache, cache_notes = fill_cell_vectors(
            config, table, views, needs, store_dir=store, progress=progress
        )
        notes += [note for note in cache_notes if note not in notes]
        tasks = make_tasks(todo, sampled, views, cache, table, labels, config, out)
        timings["features"] = time.perf_counter() - clock

        def finish(task: CellTask, outcome: dict[str, Any] | None, error: BaseException | None):
            if error is not None:
                failed.append((task.cell_id, f"{type(error).__name__}: {error}"))
                return
            assert outcome is not None
            write_cell_metrics(out, task.cell_id, outcome["metrics"])
            results_file.append(result_row(task.cell, task.cell_id, task.sizes, outcome))

        clock = time.perf_counter()
        train_cells(tasks, cache, finish, out=out, jobs=jobs, progress=progress)
        timings["cells"] = time.perf_counter() - clock

    frame = results_file.read()
    frame = frame[frame["cell_id"].isin(set(ids))].reset_index(drop=True)
    run = GridRun(
        output_dir=out,
        results=frame,
        cells=len(cells),
        ran=len(todo) - len(failed),
        skipped=len(cells) - len(todo) if max_cells is None else len(done & set(ids)),
        failed=failed,
        seconds=timings,
        notes=notes,
    )
    if not todo and reuse_report(run, results_file.path):
        return run  # nothing new since the last report: a finished grid returns at once
    if write_reports and len(frame):
        clock = time.perf_counter()
        write_outputs(run, config, n_classes=len(labels))
        timings["reports"] = time.perf_counter() - clock
    return run
