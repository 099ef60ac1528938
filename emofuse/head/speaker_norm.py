"""Speaker-adaptive normalisation with shrinkage: each speaker's vectors re-centred and
re-scaled by that speaker's own per-dimension statistics, shrunk toward the training set's
by clip count, so that a speaker heard in three clips is barely moved and one heard in
three hundred is fully normalised.

For a speaker with ``n`` clips, per-dimension mean ``m_s`` and variance ``v_s``, and the
training set's mean ``m`` and pooled within-speaker variance ``v``::

    mean_s = (n * m_s + k * m) / (n + k)
    var_s  = (n * v_s + k * v) / (n + k)          (``shrink_scale``; else var_s = v)
    x'     = m + sqrt(v) * (x - mean_s) / sqrt(var_s)

``k`` is a number of pseudo-clips. The output stays in the training set's units: a speaker
with no clips (``n = 0``: no speaker named, a blank name) is left exactly as it is, and
``k -> inf`` is the identity too; ``k -> 0`` is plain per-speaker z-scoring (mapped back to
the training set's mean and scale). Any standardiser after it sees the same z-scores either
way. Only the columns ``start:stop`` are touched (the speech block of x = [A; T]: text
vectors do not depend on the voice).

A speaker's mean is biased by which emotions its clips happen to show (a caller who is
angry all call would be normalised into "neutral"). With a :class:`Composition` the mean
comes from each clip's block minus the class offsets weighted by a linear classifier's
probabilities, so that bias mostly cancels; the variance still comes from the block.

Statistics come from unlabelled clips only (:meth:`SpeakerNorm.statistics` per clip,
accumulated in one pass as :class:`~emofuse.head.speaker_stats.Moments`), so memory is
a few dim-sized arrays per speaker, whatever the rows. Training rows go through
:meth:`SpeakerNorm.training_rows` (normalised by all of a speaker's clips, and again by
a few random ones) so that the head also learns speakers heard in few clips. numpy only:
the service and the CLI can use it without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emofuse.head.speaker_stats import (
    Moments,
    draw_without_replacement,
    pooled,
    rows_of,
    speaker_key,
    speaker_moments,
)

#: A speaker's scale is never below this fraction of the training set's (a dimension that
#: one speaker never varies must not blow up).
SCALE_FLOOR = 0.1
#: A training-set scale below this counts as a constant dimension (kept at 1, as the
#: head's standardiser does).
STD_FLOOR = 1e-5


@dataclass
class Composition:
    """What makes a speaker's mean independent of which emotions its clips happen to
    show: a linear classifier on the whole row (standardised: ``(x - x_mean) / x_scale``,
    then ``weight``, ``bias``) and each class's offset from its speaker's mean in the
    normalised block (``offsets``, (classes, block dim), from labelled training rows). A
    clip's statistic for the mean is its block minus the offsets weighted by the
    classifier's probabilities: a speaker heard only while angry is not taken for a
    speaker whose voice is always like that."""

    weight: np.ndarray
    bias: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        for name in ("weight", "bias", "x_mean", "x_scale", "offsets"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        n_classes, dim = self.weight.shape
        if (
            self.bias.shape != (n_classes,)
            or self.x_mean.shape != (dim,)
            or self.x_scale.shape != (dim,)
            or self.offsets.shape[0] != n_classes
        ):
            raise ValueError("speaker norm: composition arrays of inconsistent shapes")

    @staticmethod
    def class_offsets(
        block: np.ndarray, y: np.ndarray, speakers: Iterable[Any], n_classes: int
    ) -> np.ndarray:
        """Mean deviation of each class's rows from their speaker's mean (rows without a
        speaker: from the overall mean); zeros for a class without rows."""
        block = rows_of(block)
        keys = np.asarray([speaker_key(s) or "" for s in speakers], dtype=object)
        deviation = block - block.mean(axis=0)
        for key in dict.fromkeys(keys.tolist()):
            if key:
                mask = keys == key
                deviation[mask] = block[mask] - block[mask].mean(axis=0)
        y = np.asarray(y)
        return np.stack(
            [deviation[y == c].mean(axis=0) if (y == c).any() else np.zeros(block.shape[1])
             for c in range(n_classes)]
        )  # fmt: skip

    def corrected(self, x: np.ndarray, block: np.ndarray) -> np.ndarray:
        logits = ((x - self.x_mean) / self.x_scale) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return block - p @ self.offsets

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"composition.{k}": getattr(self, k).copy() for k in _COMPOSITION}


_COMPOSITION = ("weight", "bias", "x_mean", "x_scale", "offsets")


@dataclass
class SpeakerNorm:
    """The fitted state: the training set's mean and pooled within-speaker scale of the
    columns ``start:stop``, ``k``, and optionally a :class:`Composition` correction of
    speaker means. Serialisable (:meth:`to_dict`, or :meth:`arrays` + :meth:`meta` for
    safetensors + JSON).

    A speaker's statistics are :class:`Moments` of :meth:`statistics` of its rows (never
    of the raw rows: use :meth:`moments` / :meth:`speaker_moments`): the block, or with a
    composition correction the corrected block (for the mean) beside the block (for the
    variance)."""

    mean: np.ndarray
    scale: np.ndarray
    k: float
    start: int = 0
    stop: int | None = None
    shrink_scale: bool = True
    scale_floor: float = SCALE_FLOOR
    composition: Composition | None = None
    #: anything the caller wants recorded with the state (e.g. the decision and its evidence)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.scale = np.asarray(self.scale, dtype=np.float64)
        self.k = float(self.k)
        if self.stop is None:
            self.stop = self.start + len(self.mean)
        if self.mean.shape != self.scale.shape or self.stop - self.start != len(self.mean):
            raise ValueError(
                f"speaker norm: mean {self.mean.shape}, scale {self.scale.shape} and columns "
                f"{self.start}:{self.stop} disagree"
            )
        if not self.k >= 0 or not (self.scale > 0).all():
            raise ValueError("speaker norm: k must be >= 0 and every scale > 0")
        if self.composition is not None and self.composition.offsets.shape[1] != self.dim:
            raise ValueError("speaker norm: composition offsets do not match the block")

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        speakers: Iterable[Any],
        *,
        k: float,
        start: int = 0,
        stop: int | None = None,
        shrink_scale: bool = True,
        composition: Composition | None = None,
    ) -> SpeakerNorm:
        """The state from training rows: the block's mean, and its pooled within-speaker
        scale (rows without a speaker count with their spread around the overall mean;
        the total scale when no row names a speaker)."""
        rows = rows_of(x)
        stop = rows.shape[1] if stop is None else stop
        block = rows[:, start:stop]
        moments = speaker_moments(block, speakers)
        everyone = Moments.of(block)
        if moments:
            _, within = pooled(moments.values())
            named = sum(m.count for m in moments.values())
            if named < everyone.count:
                within = (within * named + everyone.variance * (everyone.count - named)) / (
                    everyone.count
                )
        else:
            within = everyone.variance
        scale = np.sqrt(within)
        scale = np.where(scale < STD_FLOOR, 1.0, scale)
        return cls(
            everyone.mean, scale, float(k), start, stop, shrink_scale, composition=composition
        )

    @property
    def dim(self) -> int:
        return len(self.mean)

    # ------------------------------------------------------------ statistics

    def statistics(self, x: np.ndarray) -> np.ndarray:
        """Per clip, what a speaker's :class:`Moments` accumulate: the block, or
        ``[corrected block, block]`` with a composition correction. ``x``: whole rows."""
        rows = rows_of(x)
        block = rows[:, self.start : self.stop]
        if self.composition is None:
            return block
        return np.hstack([self.composition.corrected(rows, block), block])

    def moments(self, x: np.ndarray) -> Moments:
        """The statistics of one speaker's rows (whole rows)."""
        return Moments.of(self.statistics(x))

    def speaker_moments(
        self, x: np.ndarray, speakers: Iterable[Any], into: dict[str, Moments] | None = None
    ) -> dict[str, Moments]:
        """Per-speaker statistics of whole rows (blank speakers skipped); ``into`` keeps
        accumulating over chunks."""
        return speaker_moments(self.statistics(x), speakers, into)

    def _split(self, mean: np.ndarray, variance: np.ndarray):
        if self.composition is None:
            return mean, variance
        return mean[..., : self.dim], variance[..., self.dim :]

    def speaker_params(self, moments: Moments | None) -> tuple[np.ndarray, np.ndarray]:
        """The shrunk mean and scale of a speaker (the training set's for ``None`` or a
        speaker with no clips)."""
        if moments is None or moments.count == 0:
            return self.mean.copy(), self.scale.copy()
        expected = self.dim * (1 if self.composition is None else 2)
        if moments.dim != expected:
            raise ValueError(
                f"speaker statistics have {moments.dim} values; this normalisation keeps "
                f"{expected} (statistics of other vectors, or of another bundle?)"
            )
        return self._shrunk(float(moments.count), *self._split(moments.mean, moments.variance))

    def _shrunk(self, n, mean, variance) -> tuple[np.ndarray, np.ndarray]:
        """Shrunk mean and scale from a count, mean and variance (broadcasting: one
        speaker, or one row of statistics per clip)."""
        k = self.k
        if np.isinf(k):
            shape = np.shape(mean)
            return np.broadcast_to(self.mean, shape), np.broadcast_to(self.scale, shape)
        shrunk_mean = (n * mean + k * self.mean) / (n + k)
        if not self.shrink_scale:
            return shrunk_mean, np.broadcast_to(self.scale, np.shape(mean))
        var = (n * variance + k * self.scale**2) / (n + k)
        return shrunk_mean, np.maximum(np.sqrt(var), self.scale_floor * self.scale)

    # ------------------------------------------------------------ transforms

    def _apply(self, x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        out = np.array(rows_of(x), dtype=np.float32)
        block = out[:, self.start : self.stop].astype(np.float64)
        out[:, self.start : self.stop] = self.mean + self.scale * (block - mean) / scale
        return out

    def transform(self, x: np.ndarray, moments: Moments | None) -> np.ndarray:
        """Rows of one speaker, normalised by ``moments`` (a float32 copy; columns outside
        ``start:stop`` unchanged; ``None`` or no clips: unchanged)."""
        if moments is None or moments.count == 0 or np.isinf(self.k):
            return np.array(rows_of(x), dtype=np.float32)
        return self._apply(x, *self.speaker_params(moments))

    def transform_groups(
        self,
        x: np.ndarray,
        speakers: Iterable[Any],
        moments: Mapping[str, Moments] | None = None,
    ) -> np.ndarray:
        """Rows of many speakers, each normalised by its own statistics: ``moments`` (by
        speaker name), or, by default, those of its own rows in ``x``. Rows whose speaker
        is blank or has no statistics are left unchanged."""
        rows = rows_of(x)
        keys = np.asarray([speaker_key(s) or "" for s in speakers], dtype=object)
        if len(keys) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(keys)} speaker names")
        if moments is None:
            moments = self.speaker_moments(rows, keys)
        out = rows.astype(np.float32)
        for key in dict.fromkeys(keys.tolist()):
            if key and key in moments:
                mask = keys == key
                out[mask] = self.transform(rows[mask], moments[key])
        return out

    def training_rows(
        self,
        x: np.ndarray,
        speakers: Iterable[Any],
        *,
        few: int | Sequence[int] = 3,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Training rows as prediction will see them: every row once normalised by its
        speaker's statistics over all its clips, and once more per entry of ``few``, by
        those of that many random clips of the same speaker (drawn per row, seeded), so
        the head learns to read speakers heard in few clips too. Returns the rows and, for
        each, the index of the row it came from (to repeat the labels). Rows without a
        speaker appear unchanged in every copy."""
        rows = rows_of(x)
        keys = np.asarray([speaker_key(s) or "" for s in speakers], dtype=object)
        if len(keys) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(keys)} speaker names")
        stats = self.statistics(rows)
        full = self.transform_groups(rows, keys, speaker_moments(stats, keys))
        copies = [full]
        rng = np.random.default_rng(seed)
        for size in [few] if isinstance(few, int) else list(few):
            noisy = full.copy()
            for key in dict.fromkeys(keys.tolist()):
                members = np.flatnonzero(keys == key)
                if not key or len(members) <= size:
                    continue
                picks = members[draw_without_replacement(rng, len(members), size, len(members))]
                drawn = stats[picks]  # (members, size, statistics)
                mean, variance = self._split(drawn.mean(axis=1), drawn.var(axis=1))
                noisy[members] = self._apply(
                    rows[members], *self._shrunk(float(size), mean, variance)
                )
            copies.append(noisy)
        index = np.arange(len(rows))
        return np.concatenate(copies), np.tile(index, len(copies))

    # ------------------------------------------------------------ state

    def meta(self) -> dict[str, Any]:
        """Everything but the arrays (JSON)."""
        return {
            "k": self.k,
            "start": self.start,
            "stop": self.stop,
            "shrink_scale": self.shrink_scale,
            "scale_floor": self.scale_floor,
            "composition": self.composition is not None,
            "info": self.info,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays, for safetensors (float64: they are small)."""
        out = {"mean": self.mean.copy(), "scale": self.scale.copy()}
        if self.composition is not None:
            out.update(self.composition.arrays())
        return out

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> SpeakerNorm:
        composition = None
        if meta.get("composition"):
            composition = Composition(
                *(np.asarray(arrays[f"composition.{k}"]) for k in _COMPOSITION)
            )
        return cls(
            np.asarray(arrays["mean"]),
            np.asarray(arrays["scale"]),
            float(meta["k"]),
            int(meta["start"]),
            int(meta["stop"]),
            bool(meta.get("shrink_scale", True)),
            float(meta.get("scale_floor", SCALE_FLOOR)),
            composition,
            dict(meta.get("info", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-serialisable values."""
        return {**self.meta(), **{k: v.tolist() for k, v in self.arrays().items()}}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SpeakerNorm:
        return cls.from_arrays(values, values)
