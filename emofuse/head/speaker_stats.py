"""Per-speaker statistics accumulated in one pass: :class:`Moments` (count, mean and sum
of squared deviations per dimension, merged exactly, Chan et al.), so memory is one pair
of dim-sized arrays per speaker however many rows stream by; speaker names (a blank one
is no speaker). numpy only. Used by :mod:`emofuse.head.speaker_norm`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def is_blank(speaker: Any) -> bool:
    """No usable speaker name: None, NaN, or an empty/whitespace string."""
    if speaker is None:
        return True
    if isinstance(speaker, float) and np.isnan(speaker):
        return True
    return not str(speaker).strip()


def speaker_key(speaker: Any) -> str | None:
    """The speaker name used as a key (stripped string), or None for a blank one."""
    return None if is_blank(speaker) else str(speaker).strip()


@dataclass
class Moments:
    """Running per-dimension statistics of one group of rows (one speaker): the row count,
    the mean and the sum of squared deviations (``m2``), updated exactly with each batch
    (Chan et al.'s merge), so a stream of batches gives the statistics of all its rows."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(0, np.zeros(dim), np.zeros(dim))

    @classmethod
    def of(cls, rows: np.ndarray) -> Moments:
        rows = rows_of(rows)
        if not len(rows):
            return cls.empty(rows.shape[1])
        mean = rows.mean(axis=0)
        return cls(len(rows), mean, ((rows - mean) ** 2).sum(axis=0))

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def variance(self) -> np.ndarray:
        """The population variance (zeros for fewer than two rows)."""
        return self.m2 / self.count if self.count else np.zeros_like(self.m2)

    def merge(self, other: Moments) -> Moments:
        """The statistics of both groups of rows together (a new object)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of {other.dim} and {self.dim} values")
        n = self.count + other.count
        if not other.count or not self.count:
            src = other if other.count else self
            return Moments(src.count, src.mean.copy(), src.m2.copy())
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Moments(n, mean, m2)

    def add(self, rows: np.ndarray) -> Moments:
        """Add a batch of rows in place; returns self."""
        merged = self.merge(Moments.of(rows))
        self.count, self.mean, self.m2 = merged.count, merged.mean, merged.m2
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Moments:
        return cls(
            int(values["count"]), np.asarray(values["mean"], float), np.asarray(values["m2"], float)
        )


def rows_of(x: np.ndarray) -> np.ndarray:
    rows = np.asarray(x, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D matrix (rows = clips), got shape {rows.shape}")
    return rows


def draw_without_replacement(rng, population: int, size: int, times: int) -> np.ndarray:
    """``times`` independent draws of ``size`` distinct indices below ``population``
    (Floyd's algorithm, vectorised over the draws): shape (times, size)."""
    out = np.empty((times, size), dtype=np.int64)
    for j, top in enumerate(range(population - size, population)):
        pick = rng.integers(0, top + 1, size=times)
        taken = (out[:, :j] == pick[:, None]).any(axis=1)
        out[:, j] = np.where(taken, top, pick)
    return out


def speaker_moments(
    x: np.ndarray, speakers: Iterable[Any], into: dict[str, Moments] | None = None
) -> dict[str, Moments]:
    """Per-speaker :class:`Moments` of the rows of ``x`` (rows with a blank speaker are
    skipped). Pass ``into`` to keep accumulating over chunks of a long table."""
    rows = rows_of(x)
    keys = np.asarray([speaker_key(s) or "" for s in speakers], dtype=object)
    if len(keys) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(keys)} speaker names")
    out = {} if into is None else into
    for key in dict.fromkeys(keys.tolist()):
        if key:
            part = rows[keys == key]
            out[key] = out[key].add(part) if key in out else Moments.of(part)
    return out


def pooled(moments: Iterable[Moments]) -> tuple[Moments, np.ndarray]:
    """All rows' statistics together, and the pooled within-speaker variance
    (sum of each speaker's squared deviations from its own mean, over all rows)."""
    groups = list(moments)
    if not groups:
        raise ValueError("no speaker statistics to pool")
    total = groups[0]
    for group in groups[1:]:
        total = total.merge(group)
    within = sum(g.m2 for g in groups) / max(total.count, 1)
    return total, within
