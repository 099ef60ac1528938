"""The settings of head training, kept apart from torch so that the CLI and grid configs
can read them (flags, validation) without importing it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Every knob of head training; the CLI builds its flags from these fields."""

    batch_size: int = field(default=32, metadata={"help": "clips per optimisation step"})
    epochs: int = field(default=10, metadata={"help": "passes over the training set"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    hidden: int = field(default=256, metadata={"help": "width of the hidden layer"})
    dropout: float = field(default=0.2, metadata={"help": "dropout after the hidden layer"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation, shuffling, dropout"})
    class_weighting: bool = field(
        default=False, metadata={"help": "weight the loss by inverse class frequency"}
    )

    def __post_init__(self) -> None:
        problems = train_config_problems(self)
        if problems:
            raise ValueError("bad training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


def train_config_problems(config: Any) -> list[str]:
    """What is wrong with a set of training settings (an object with TrainConfig's
    fields), each as ``"<field> must ..."``; empty when they are fine."""
    problems = []
    if config.batch_size < 1:
        problems.append(f"batch_size must be >= 1 (got {config.batch_size})")
    if config.epochs < 1:
        problems.append(f"epochs must be >= 1 (got {config.epochs})")
    if not config.lr > 0:
        problems.append(f"lr must be > 0 (got {config.lr})")
    if config.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0 (got {config.weight_decay})")
    if config.hidden < 1:
        problems.append(f"hidden must be >= 1 (got {config.hidden})")
    if not 0 <= config.dropout < 1:
        problems.append(f"dropout must be in [0, 1) (got {config.dropout})")
    return problems
