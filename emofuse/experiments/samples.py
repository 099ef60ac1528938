"""The training rows each cell samples from its split's train part (cheap, table only),
after a check that the corpus can serve every order of the grid. Order ``diverse``
spreads a cell's sample over vectors, so those are read first
(:func:`~emofuse.experiments.vectors.fill_order_vectors`): never a val or test row's."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.plan import Cell
from emofuse.experiments.split_views import SplitView
from emofuse.experiments.vectors import (
    CachedVectors,
    VectorCache,
    fill_order_vectors,
    order_block,
)


def check_orders(config: GridConfig, table: pd.DataFrame) -> None:
    """Refuse, before any feature is computed, an order the corpus cannot serve."""
    from emofuse.sampling import has_speakers

    if "speaker-balanced" in config.grid.orders and not has_speakers(table):
        raise GridRunError(
            f"grid.orders: 'speaker-balanced' takes turns over speakers, and no clip of "
            f"{config.corpus.source} names one (empty speaker column); use another order"
        )


def sample_cells(
    config: GridConfig,
    table: pd.DataFrame,
    views: dict[str, SplitView],
    todo: list[tuple[Cell, str]],
    *,
    store_dir,
    progress: bool,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The training rows of each cell in ``todo`` (by cell id) and notes (labels short
    of clips, encoders that failed on some clips). Checks the orders first."""
    check_orders(config, table)
    notes: list[str] = []
    diverse = [cell for cell, _ in todo if cell.order == "diverse"]
    order_vectors: VectorCache = {}
    if diverse:  # its sample follows vectors: read them before sampling
        order_vectors, notes = fill_order_vectors(
            config, table, views, diverse, store_dir=store_dir, progress=progress
        )
    sampled: dict[str, np.ndarray] = {}
    for cell, cell_id in todo:
        vectors = order_vectors[order_block(cell)[1]] if cell.order == "diverse" else None
        sampled[cell_id], cell_notes = sample_cell_rows(
            table, views[cell.split_key], cell, config, vectors
        )
        notes += cell_notes
    return sampled, notes


def sample_cell_rows(
    table: pd.DataFrame,
    view: SplitView,
    cell: Cell,
    config: GridConfig,
    vectors: CachedVectors | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The table positions a cell trains on (its sample of the view's train part) and a
    note when a label had fewer clips than asked for. Order ``diverse`` spreads the
    sample over ``vectors`` (those cached under the cell's
    :func:`~emofuse.experiments.vectors.order_block` key), choosing among the train rows
    that have one."""
    from emofuse.sampling import SamplingShortfallWarning, sample_train_part

    train = view.rows("train")
    matrix = None
    if cell.order == "diverse":
        if vectors is None:
            raise GridRunError(f"cell {cell}: order 'diverse' needs the cell's vectors")
        train = train[vectors.has(train)]  # the rest has no vector, so no cell reads it
        matrix = vectors.take(train)
    framed = table.iloc[train].assign(part="train", _pos=train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingShortfallWarning)
        try:
            sampled = sample_train_part(
                framed,
                cell.per_label,
                order=cell.order,
                by=cell.order_by(config),
                dedupe_text=config.grid.dedupe_text,
                seed=cell.seed,
                vectors=matrix,
            )
        except ValueError as err:
            raise GridRunError(f"grid.orders: {cell.order!r} on {view.key}: {err}") from err
    notes = []
    short = sampled.attrs.get("shortfall") or {}
    if short:
        notes.append(
            f"per_label={cell.per_label_text} on {view.key}: "
            + ", ".join(f"{k} has {v}" for k, v in short.items())
        )
    return sampled["_pos"].to_numpy(dtype=np.int64), notes
