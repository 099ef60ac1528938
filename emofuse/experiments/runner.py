"""Run a grid: corpus -> splits (or folds) -> features once per encoder -> one trained
head per cell -> results.csv, tables, plots and report.md under the output folder.

Each step has its own module; :func:`run_grid` strings them together in this order:

1. :mod:`~emofuse.experiments.corpus`: the corpus is read once (``source = "demo"``
   makes the demo corpus in ``<output>/demo-corpus``).
2. :mod:`~emofuse.experiments.split_views`: every split strategy is applied once (CV
   strategies give one split per fold), checked for leakage and written to
   ``<output>/splits/`` so any figure can be traced to its test part.
3. :mod:`~emofuse.experiments.plan`: the cells still to run are planned and their
   training rows sampled (cheap, table only; order ``diverse`` first reads the vectors
   of its splits' train parts), so features are extracted only for clips some cell
   uses.
4. :mod:`~emofuse.experiments.vectors`: the vectors those clips need, from one feature
   store (``<output>/features`` unless ``encoders.store`` says otherwise).
5. :mod:`~emofuse.experiments.cells`: cells train heads on the cached arrays (in
   parallel processes with ``output.jobs``); :mod:`~emofuse.experiments.results`: each
   finished cell appends one flushed row to ``results.csv``. A rerun skips every cell
   whose id is already there, so an interrupted grid resumes and a finished grid
   returns at once.
6. :mod:`~emofuse.experiments.report`: tables, plots and report.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.experiments.cells import CellTask, execute, make_tasks
from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.corpus import guard_corpus_identity, load_corpus
from emofuse.experiments.plan import check_orders, plan_cells, sample_cell_rows
from emofuse.experiments.report import reuse_report, write_outputs
from emofuse.experiments.results import RESULTS_FILE, ResultsFile, result_row, write_cell_metrics
from emofuse.experiments.split_views import make_splits, write_split
from emofuse.experiments.vectors import (
    FEATURES_DIR,
    Bank,
    fill_bank,
    fill_order_bank,
    order_block,
)

__all__ = ["GridRun", "GridRunError", "run_grid"]


@dataclass
class GridRun:
    """What a call of :func:`run_grid` did and where its outputs are."""

    output_dir: Path
    results: pd.DataFrame  # rows of this grid's cells only
    cells: int
    ran: int
    skipped: int
    failed: list[tuple[str, str]]  # (cell_id, error)
    seconds: dict[str, float]
    tables: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)


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
    check_orders(config, table)
    store = config.resolve(config.encoders.store) if config.encoders.store else out / FEATURES_DIR
    notes: list[str] = []
    diverse = [cell for cell, _ in todo if cell.order == "diverse"]
    order_bank: Bank = {}
    if diverse:  # its sample follows vectors: read them before sampling
        order_bank, notes = fill_order_bank(
            config, table, views, diverse, store_dir=store, progress=progress
        )
    sampled: dict[str, np.ndarray] = {}
    for cell, cid in todo:
        vectors = order_bank[order_block(cell)[1]] if cell.order == "diverse" else None
        sampled[cid], cell_notes = sample_cell_rows(
            table, views[cell.split_key], cell, config, vectors
        )
        notes += cell_notes
    timings["split+plan"] = time.perf_counter() - clock

    failed: list[tuple[str, str]] = []
    if todo:
        clock = time.perf_counter()
        needs = [
            (cell, sampled[cid], views[cell.split_key].with_held_out(sampled[cid]))
            for cell, cid in todo
        ]
        bank, bank_notes = fill_bank(
            config, table, views, needs, store_dir=store, progress=progress
        )
        notes += [note for note in bank_notes if note not in notes]
        tasks = make_tasks(todo, sampled, views, bank, table, labels, config, out)
        timings["features"] = time.perf_counter() - clock

        def finish(task: CellTask, outcome: dict[str, Any] | None, error: BaseException | None):
            if error is not None:
                failed.append((task.cell_id, f"{type(error).__name__}: {error}"))
                return
            assert outcome is not None
            write_cell_metrics(out, task.cell_id, outcome["metrics"])
            results_file.append(result_row(task.cell, task.cell_id, task.sizes, outcome))

        clock = time.perf_counter()
        execute(tasks, bank, finish, out=out, jobs=jobs, progress=progress)
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
