"""The cells of a grid and their stable ids (:mod:`~emofuse.experiments.samples` draws
each cell's training rows).

A cell id is a stable hash of everything that changes its figure (corpus, split
settings, fold, modality, encoders, per_label, order, seed, sampling and training
settings), not of the output folder or the number of jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from emofuse.experiments.config import GridConfig
from emofuse.experiments.split_views import split_key
from emofuse.modalities import SPEECH, TEXT, inputs_of


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
    speaker_norm: str = "off"  # grid.speaker_norm

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
            # new settings enter the id only away from what every earlier grid did
            **({"speaker_norm": self.speaker_norm} if self.speaker_norm != "off" else {}),
        }

    def cell_id(self, config: GridConfig) -> str:
        from emofuse.encoders.base import stable_hash

        return stable_hash(self.settings(config), chars=12)


def resolved_train_settings(config: GridConfig) -> dict[str, Any]:
    """The [train] settings with the recipe's values filled in (less ``seed`` and
    ``speaker_norm``, swept by the grid; ``select`` only when on), so a setting left to the recipe and the same value written out give one
    cell, and a change of a recipe's defaults gives new cells."""
    from emofuse.head.config import TrainConfig

    resolved = TrainConfig(**asdict(config.train)).resolved().to_dict()
    resolved.pop("seed")
    resolved.pop("speaker_norm")  # a grid axis (Cell.speaker_norm)
    if not resolved["select"]:
        resolved.pop("select")  # as every grid trained before model selection existed
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
        Cell(strategy, fold, modality, speech, text, per_label, order, seed, norm)
        for strategy in config.split.strategies
        for fold in folds[strategy]
        for modality in g.modalities
        for speech, text in encoder_pairs(config, modality)
        for per_label in g.per_label
        for order in g.orders
        for seed in g.seeds
        for norm in g.speaker_norm
    ]
