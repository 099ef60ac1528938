"""The cells of a grid, their stable ids, and the training rows each cell samples.

A cell id is a stable hash of everything that changes its figure (corpus, split
settings, fold, modality, encoders, per_label, order, seed, sampling and training
settings), not of the output folder or the number of jobs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.split_views import SplitView, split_key
from emofuse.modalities import SPEECH, TEXT, inputs_of

if TYPE_CHECKING:
    from emofuse.experiments.vectors import BankEntry


@dataclass(frozen=True)
class Cell:
    """One point of the grid: what to train on and how."""

    split_strategy: str
    fold: str  # "" for a single split; the fold's name for kfold / logo
    modality: str
    speech_encoder: str  # "" when the modality reads no speech
    text_encoder: str  # "" when the modality reads no text
    per_label: int | None  # None: the whole train part
    order: str
    seed: int

    @property
    def split_key(self) -> str:
        return split_key(self.split_strategy, self.fold)

    @property
    def per_label_text(self) -> str:
        return "all" if self.per_label is None else str(self.per_label)

    def order_by(self, config: GridConfig) -> str:
        return config.grid.text_order_by if self.modality == TEXT else config.grid.speech_order_by

    def settings(self, config: GridConfig) -> dict[str, Any]:
        """Everything that changes this cell's figure (the input of its id)."""
        return {
            "corpus": corpus_identity(config),
            "split": split_identity(config, self.split_strategy),
            "fold": self.fold,
            "modality": self.modality,
            "speech_encoder": self.speech_encoder,
            "text_encoder": self.text_encoder,
            "float16": config.encoders.float16,
            "per_label": self.per_label_text,
            "order": self.order,
            "order_by": self.order_by(config),
            "dedupe_text": config.grid.dedupe_text,
            "seed": self.seed,
            "train": resolved_train_settings(config),
        }

    def cell_id(self, config: GridConfig) -> str:
        from emofuse.encoders.base import stable_hash

        return stable_hash(self.settings(config), chars=12)


def resolved_train_settings(config: GridConfig) -> dict[str, Any]:
    """The [train] settings with the recipe's values filled in (less ``seed``, swept by
    the grid), so a setting left to the recipe and the same value written out give one
    cell, and a change of a recipe's defaults gives new cells."""
    from emofuse.head.config import TrainConfig

    resolved = TrainConfig(**asdict(config.train)).resolved().to_dict()
    resolved.pop("seed")
    return resolved


def corpus_identity(config: GridConfig) -> dict[str, Any]:
    c = config.corpus
    ident: dict[str, Any] = {"labels": list(c.labels)}
    if c.source == "demo":
        ident["source"] = "demo"
        ident["demo"] = [c.demo_speakers, c.demo_scripts_per_emotion, c.demo_seed]
    else:
        ident["source"] = str(config.resolve(c.source))
        ident["layout"] = c.layout
    return ident


def split_identity(config: GridConfig, strategy: str) -> dict[str, Any]:
    s = config.split
    if strategy == "kfold":
        return {"strategy": strategy, "k": s.k, "group": s.group, "val": s.val_size, "seed": s.seed}
    if strategy == "logo":
        return {"strategy": strategy, "group": s.group, "val": s.val_size, "seed": s.seed}
    return {"strategy": strategy, "test": s.test_size, "val": s.val_size, "seed": s.seed}


def encoder_pairs(config: GridConfig, modality: str) -> list[tuple[str, str]]:
    """(speech encoder, text encoder) pairs of a modality; "" for the input it does not read."""
    reads = inputs_of(modality)
    speech = config.encoders.speech if SPEECH in reads else ("",)
    text = config.encoders.text if TEXT in reads else ("",)
    return [(s, t) for s in speech for t in text]


def plan_cells(config: GridConfig, folds: dict[str, Sequence[str]]) -> list[Cell]:
    """Every cell of the grid, in a stable order. ``folds`` maps each split strategy to
    its fold names (``[""]`` for a single split)."""
    g = config.grid
    return [
        Cell(strategy, fold, modality, speech, text, per_label, order, seed)
        for strategy in config.split.strategies
        for fold in folds[strategy]
        for modality in g.modalities
        for speech, text in encoder_pairs(config, modality)
        for per_label in g.per_label
        for order in g.orders
        for seed in g.seeds
    ]


def check_orders(config: GridConfig, table: pd.DataFrame) -> None:
    """Refuse, before any feature is computed, an order the corpus cannot serve."""
    from emofuse.sampling import has_speakers

    if "speaker-balanced" in config.grid.orders and not has_speakers(table):
        raise GridRunError(
            f"grid.orders: 'speaker-balanced' takes turns over speakers, and no clip of "
            f"{config.corpus.source} names one (empty speaker column); use another order"
        )


def sample_cell_rows(
    table: pd.DataFrame,
    view: SplitView,
    cell: Cell,
    config: GridConfig,
    vectors: BankEntry | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The table positions a cell trains on (its sample of the view's train part) and a
    note when a label had fewer clips than asked for. Order ``diverse`` spreads the
    sample over ``vectors`` (the cell's :func:`~emofuse.experiments.vectors.order_block`
    entry), choosing among the train rows that have one."""
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
