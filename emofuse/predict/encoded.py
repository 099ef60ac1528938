"""Inputs as vectors, between the two steps of the prediction engine: what
:meth:`emofuse.predict.PredictionEngine.encode` gives and
:meth:`~emofuse.predict.PredictionEngine.score` takes, so that a caller can gather speaker
statistics over many batches before scoring any (``predict --manifest``, the timeline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Encoded:
    """Inputs as vectors, ready to score: ``x`` = [A; T] (float32, widths checked, finite),
    the text each read, its warnings and its speaker (the name as given)."""

    x: np.ndarray
    texts: list[str | None]
    warnings: list[list[str]]
    speakers: list[Any]

    def __len__(self) -> int:
        return len(self.x)

    def take(self, rows: Sequence[int]) -> Encoded:
        rows = list(rows)
        return Encoded(
            self.x[rows],
            [self.texts[i] for i in rows],
            [self.warnings[i] for i in rows],
            [self.speakers[i] for i in rows],
        )

    def split(self) -> list[Encoded]:
        """One :class:`Encoded` per row."""
        return [self.take([i]) for i in range(len(self))]

    @classmethod
    def join(cls, parts: Sequence[Encoded], width: int) -> Encoded:
        """The rows of ``parts`` in order (``width``: columns of an empty result)."""
        if not parts:
            return cls(np.zeros((0, width), dtype=np.float32), [], [], [])
        return cls(
            np.concatenate([p.x for p in parts]),
            [t for p in parts for t in p.texts],
            [w for p in parts for w in p.warnings],
            [s for p in parts for s in p.speakers],
        )


@dataclass
class EncodedEach:
    """What :meth:`PredictionEngine.encode_each` gives: the good inputs' vectors (in input
    order), their positions, and each bad input's error by position."""

    encoded: Encoded
    rows: list[int]
    errors: dict[int, Exception]
