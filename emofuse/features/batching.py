"""How the items one encoder part lacks are grouped into batches: sorted by length, so
that a batch pads little, each holding at most ``max_items`` items and, for speech, at
most ``max_seconds`` of *padded* audio (items x the longest clip), the budget that sets a
GPU's memory and work per batch whatever the clips' lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emofuse.encoders.base import Encoder
from emofuse.encoders.hf_inputs import PreparedInputEncoder
from emofuse.modalities import SPEECH

#: Padded seconds of audio per batch for models that batch (Hugging Face speech models):
#: 16 clips of 7.5 s, 40 of 3 s. Big enough to keep a GPU busy; on a CPU the memory of a
#: batch stays below what 8 clips of 30 s took before the budget existed.
DEFAULT_BATCH_SECONDS = 120.0
#: Items per batch for encoders that prepare their inputs apart from the model (the
#: Hugging Face ones): a cap; for speech the seconds budget usually binds first.
DEVICE_MAX_ITEMS = 64
#: Items per batch (one ``encode()`` call) for every other encoder, as always.
DEFAULT_MAX_ITEMS = 8

#: One item of a batch: (key, payload: audio path or cleaned text, ids it serves).
Item = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class BatchLimits:
    """At most ``max_items`` items and (when set) ``max_seconds`` of padded audio."""

    max_items: int
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {self.max_items}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


def batch_limits(
    part: Encoder, batch_size: int | None = None, batch_seconds: float | None = None
) -> BatchLimits:
    """The limits for ``part``: ``batch_size``/``batch_seconds`` where given, else the
    defaults above. The seconds budget applies to speech only (text has no seconds)."""
    prepared = isinstance(part, PreparedInputEncoder)
    if batch_size is None:
        batch_size = DEVICE_MAX_ITEMS if prepared else DEFAULT_MAX_ITEMS
    if part.modality != SPEECH:
        return BatchLimits(batch_size)
    if batch_seconds is None and prepared:
        batch_seconds = DEFAULT_BATCH_SECONDS
    return BatchLimits(batch_size, batch_seconds)


def length_batches(share: pd.DataFrame, limits: BatchLimits) -> list[list[Item]]:
    """Batches of similar length within ``limits`` (rows of
    :func:`~emofuse.features.keys.key_items`: ``length`` is seconds for speech), visited
    in a fixed shuffled order so that the progress bar's rate and ETA are honest rather
    than slowing towards the end. A clip longer than the budget is a batch of its own.

    A clip of unknown length (NaN, or not above 0) could be as long as
    :data:`~emofuse.audio_checks.MAX_CLIP_S`: under a seconds budget such clips are
    batched apart, at most :data:`DEFAULT_MAX_ITEMS` at a time (the old fixed count)."""
    lengths = share["length"].to_numpy(dtype=float)
    unknown = ~(np.isfinite(lengths) & (lengths > 0))
    ordered = share.assign(_unknown=unknown).sort_values(
        ["_unknown", "length", "key"], kind="stable"
    )
    rows = list(zip(ordered["key"], ordered["payload"], ordered["ids"], strict=True))
    lengths = np.nan_to_num(ordered["length"].to_numpy(dtype=float), nan=0.0)
    unknown = ordered["_unknown"].to_numpy()
    budgeted = limits.max_seconds is not None
    batches: list[list[Item]] = []
    current: list[Item] = []
    longest, unknown_batch = 0.0, False
    for row, length, guess in zip(rows, lengths, unknown, strict=True):
        if budgeted and guess:
            full = len(current) >= min(limits.max_items, DEFAULT_MAX_ITEMS)
            over_budget = bool(current) and not unknown_batch
        else:
            length = max(float(length), 0.0)
            full = len(current) >= limits.max_items
            padded_s = (len(current) + 1) * max(longest, length)
            over_budget = budgeted and padded_s > limits.max_seconds  # type: ignore[operator]
        if current and (full or over_budget):
            batches.append(current)
            current, longest = [], 0.0
        if not current:
            unknown_batch = bool(guess)
        current.append(row)
        longest = max(longest, float(length))
    if current:
        batches.append(current)
    order = np.random.default_rng(0).permutation(len(batches))
    return [batches[i] for i in order]
