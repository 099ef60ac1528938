"""Training the cells: one head per cell on the cached vectors
(:mod:`~emofuse.experiments.vectors`), scored on its test part, serially or in worker
processes (``output.jobs``). Each finished cell is handed to ``finish`` at once, so its
row reaches results.csv before the next ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.experiments.config import GridConfig
from emofuse.experiments.plan import Cell
from emofuse.experiments.results import write_cell_files
from emofuse.experiments.split_views import SplitView
from emofuse.experiments.vectors import CachedVectors, VectorCache, cell_blocks, usable_rows

#: where the cache goes as .npy files for worker processes (removed when they end)
SHIPPED_DIR = ".vectors"

Finish = Callable[["CellTask", "dict[str, Any] | None", "BaseException | None"], None]


@dataclass
class CellTask:
    """One cell's work: its rows of each part, their class indices, its settings."""

    cell: Cell
    cell_id: str
    blocks: list[tuple[str, str]]  # (modality, cache key), speech first
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    y: dict[str, np.ndarray]
    labels: list[str]
    train_config: dict[str, Any]
    #: speaker of each row per part (None: the table has no speaker column)
    speakers: dict[str, list[str]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def make_tasks(
    todo: list[tuple[Cell, str]],
    sampled: dict[str, np.ndarray],
    views: dict[str, SplitView],
    cache: VectorCache,
    table: pd.DataFrame,
    labels: list[str],
    config: GridConfig,
    out: Path,
) -> list[CellTask]:
    """Each cell's work: its sampled train rows (``sampled`` by cell id) and its split's
    val and test rows, less any row without a vector, with their class indices. Writes
    each cell's training ids and settings under ``cells/<cell_id>/`` first."""
    codes = {label: i for i, label in enumerate(labels)}
    y_all = table["label"].map(codes).to_numpy(dtype=np.int64)
    ids = table["id"].astype(str).to_numpy()
    who = table["speaker"].fillna("").astype(str).to_numpy() if "speaker" in table else None
    tasks = []
    for cell, cell_id in todo:
        view, blocks = views[cell.split_key], cell_blocks(cell, sampled[cell_id])
        parts = {
            "train": usable_rows(cache, blocks, sampled[cell_id]),
            "val": usable_rows(cache, blocks, view.rows("val")),
            "test": usable_rows(cache, blocks, view.rows("test")),
        }
        n_val, n_test = len(parts["val"]), len(parts["test"])
        write_cell_files(out, cell, cell_id, config, ids[parts["train"]], view, n_val, n_test)
        tasks.append(
            CellTask(
                cell=cell,
                cell_id=cell_id,
                blocks=blocks,
                **parts,
                y={name: y_all[rows] for name, rows in parts.items()},
                labels=labels,
                train_config={
                    **asdict(config.train),
                    "seed": cell.seed,
                    "speaker_norm": cell.speaker_norm,
                },
                speakers=None if who is None else {p: who[r].tolist() for p, r in parts.items()},
            )
        )
    return tasks


def train_cell(task: CellTask, cache: VectorCache) -> dict[str, Any]:
    """Train one head on cached vectors and score it on the test part, through the
    prediction engine's :func:`~emofuse.head.score.probabilities_from_features` (the
    function evaluate, predict and serve use)."""
    from emofuse.head.recipe import train_head_for_recipe
    from emofuse.head.score import probabilities_from_features
    from emofuse.head.train import TrainConfig
    from emofuse.metrics import compute_metrics

    start = time.perf_counter()

    def blocks(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {m: cache[key].take(rows) for m, key in task.blocks}

    def features(rows: np.ndarray) -> np.ndarray:
        return np.hstack(list(blocks(rows).values()))  # speech first: x = [A; T]

    dims = {m: int(block.shape[1]) for m, block in blocks(task.train[:1]).items()}
    config = TrainConfig(**task.train_config)
    has_val = len(task.val) > 0
    who = task.speakers or {}
    trained = train_head_for_recipe(
        features(task.train),
        task.y["train"],
        features(task.val) if has_val else None,
        task.y["val"] if has_val else None,
        n_classes=len(task.labels),
        config=config,
        input_dims=dims,
        speakers_train=who.get("train"),
        speakers_val=who.get("val"),
        progress=False,
    ).trained
    proba = probabilities_from_features(trained, blocks(task.test), speakers=who.get("test"))
    predicted = proba.argmax(axis=1)
    metrics = compute_metrics(task.y["test"], predicted, task.labels)
    return {
        "metrics": metrics,
        "best_epoch": int(trained.best_epoch),
        "speaker_adapted": trained.speaker_norm is not None,
        "seconds": time.perf_counter() - start,
    }


def train_cells(
    tasks: list[CellTask],
    cache: VectorCache,
    finish: Finish,
    *,
    out: Path,
    jobs: int,
    progress: bool,
) -> None:
    """Train every cell's head; ``finish(task, outcome, error)`` is called as each one
    ends (a cell that raises gets its error, and the others go on)."""
    import torch
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="cells", unit="cell", disable=not progress)

    def done(task: CellTask, outcome: dict[str, Any] | None, error: BaseException | None):
        finish(task, outcome, error)
        bar.update(1)

    # One torch thread per cell: a batch-32 step through a small head gains nothing from
    # more threads and slows down tens of times when the cores are shared. Parallelism
    # comes from running cells side by side (output.jobs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if jobs <= 1 or len(tasks) <= 1:
            _train_serial(tasks, cache, done)
        else:
            _train_parallel(tasks, cache, out, jobs, done)
    finally:
        torch.set_num_threads(threads)
        bar.close()


def _train_serial(tasks: list[CellTask], cache: VectorCache, finish: Finish) -> None:
    for task in tasks:
        try:
            outcome = train_cell(task, cache)
        except Exception as err:  # noqa: BLE001 - one bad cell must not stop the grid
            finish(task, None, err)
        else:
            finish(task, outcome, None)


def _train_parallel(
    tasks: list[CellTask], cache: VectorCache, out: Path, jobs: int, finish: Finish
) -> None:
    """Cells in worker processes; the cache goes to .npy files the workers memory-map,
    so each worker holds the features once however many cells it trains."""
    import multiprocessing
    import shutil
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from emofuse.workers import with_parent_watch

    folder = out / SHIPPED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shipped: VectorCache = {}
    for i, (key, vectors) in enumerate(cache.items()):
        path = folder / f"{i}.npy"
        np.save(path, vectors.matrix)
        shipped[key] = CachedVectors(vectors.rows, None, str(path))
    context = multiprocessing.get_context("spawn")
    # Workers die with this process: a SIGKILLed grid leaves no orphans behind.
    initializer, initargs = with_parent_watch(_worker_init, (shipped,))
    try:
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)),
            mp_context=context,
            initializer=initializer,
            initargs=initargs,
        ) as pool:
            pending = {pool.submit(_worker_train, task): task for task in tasks}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = pending.pop(future)
                        error = future.exception()
                        finish(task, None if error else future.result(), error)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_WORKER_CACHE: VectorCache = {}


def _worker_init(cache: VectorCache) -> None:
    import torch

    torch.set_num_threads(1)
    global _WORKER_CACHE
    _WORKER_CACHE = cache


def _worker_train(task: CellTask) -> dict[str, Any]:
    return train_cell(task, _WORKER_CACHE)
