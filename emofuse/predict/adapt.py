"""Which speaker statistics each clip is scored with, for a model that adapts to speakers
(a bundle with a :class:`~emofuse.head.speaker_norm.SpeakerNorm`).

Statistics come from unlabelled clips of the same speaker, never from labels, in one of
three ways (the caller chooses; :func:`row_statistics` applies the rule):

- **the call's clips** (the default): each speaker's statistics are those of all its clips
  in the call (``Bundle.predict(..., speaker=...)``; ``predict --manifest`` gathers them
  over the whole manifest in a first pass; a timeline with ``--adapt whole``);
- **fixed statistics** (``speaker_stats``: name -> :class:`Moments`), used as given; a
  named speaker without an entry is scored unadapted (``speaker_clips`` 0);
- **running statistics** (``running_stats``, a mutable mapping name -> :class:`Moments`):
  each clip is added to its speaker's entry BEFORE it is scored, in order, so the i-th clip
  of a speaker is scored with the statistics of that speaker's clips up to and including it
  (the service's speaker sessions, a timeline with ``--adapt causal``). The first clip is
  scored with n = 1, which the shrinkage holds close to the training set's statistics. The
  mapping is updated only once the clips are scored (:meth:`RowStats.commit`), so a call
  that fails never counts its clips.

A row whose speaker is blank (None, NaN, '') is never adapted and has ``speaker_clips``
None, like every row of a model that does not adapt. Statistics are always
:class:`Moments` of what the normalisation accumulates per clip
(:meth:`SpeakerNorm.statistics` of whole rows x = [A; T], :func:`statistic_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emofuse.head.speaker_norm import SpeakerNorm
from emofuse.head.speaker_stats import Moments, speaker_key, speaker_moments


@dataclass
class RowStats:
    """How each row of a batch is adapted: ``keys[i]`` names its entry of ``stats`` (None:
    not adapted; ``keys`` None: no row is), ``clips[i]`` the clip count behind it."""

    keys: list[str | None] | None
    stats: dict[str, Moments]
    clips: list[int | None]
    #: (running mapping, speaker, statistics after this batch) to write back on commit
    _updates: list[tuple[MutableMapping[str, Moments], str, Moments]] = field(default_factory=list)

    def commit(self) -> None:
        """Write the running statistics back (after the batch was scored)."""
        for running, key, final in self._updates:
            target = running.get(key)
            if target is None:
                running[key] = Moments(final.count, final.mean.copy(), final.m2.copy())
            else:  # in place: a caller may hold this object
                target.count, target.mean, target.m2 = final.count, final.mean, final.m2
        self._updates = []


def statistic_rows(norm: SpeakerNorm | None, x: np.ndarray) -> np.ndarray:
    """Per row of ``x`` (whole rows), what its speaker's :class:`Moments` accumulate (no
    columns without a normalisation)."""
    x = np.asarray(x)
    return x[:, :0] if norm is None else norm.statistics(x)


def call_statistics(
    norm: SpeakerNorm | None, x: np.ndarray, speakers: Sequence[Any], into=None
) -> dict[str, Moments]:
    """Each named speaker's statistics over the rows of ``x`` (``into``: keep accumulating
    over chunks); empty without a normalisation."""
    out = {} if into is None else into
    if norm is None:
        return out
    names = [speaker_key(s) or "" for s in speakers]
    return speaker_moments(statistic_rows(norm, x), names, into=out)


def row_statistics(
    norm: SpeakerNorm | None,
    x: np.ndarray,
    speakers: Sequence[Any] | None,
    *,
    speaker_stats: Mapping[str, Moments] | None = None,
    running_stats: MutableMapping[str, Moments] | None = None,
) -> RowStats:
    """The statistics each row of ``x`` (whole rows) is scored with (see the module
    docstring); ``speakers``: one name per row (None: no row names one)."""
    n = len(x)
    keys = [speaker_key(s) for s in speakers] if speakers is not None else [None] * n
    if len(keys) != n:
        raise ValueError(f"{n} rows but {len(keys)} speaker names")
    if norm is None or all(k is None for k in keys):
        return RowStats(None, {}, [None] * n)
    if speaker_stats is not None and running_stats is not None:
        raise ValueError("give fixed speaker statistics or running ones, not both")
    if running_stats is not None:
        return _running(statistic_rows(norm, x), keys, running_stats)
    if speaker_stats is None:
        speaker_stats = call_statistics(norm, x, keys)
    stats = {k: speaker_stats[k] for k in dict.fromkeys(keys) if k and k in speaker_stats}
    clips = [None if k is None else (stats[k].count if k in stats else 0) for k in keys]
    return RowStats(keys, stats, clips)


def _running(
    block: np.ndarray, keys: list[str | None], running: MutableMapping[str, Moments]
) -> RowStats:
    """Per row, its speaker's running statistics with the rows up to it added (each row
    gets its own snapshot, keyed by its position); ``block``: the rows' statistic rows."""
    current: dict[str, Moments] = {}
    row_keys: list[str | None] = []
    stats: dict[str, Moments] = {}
    clips: list[int | None] = []
    for i, key in enumerate(keys):
        if key is None:
            row_keys.append(None)
            clips.append(None)
            continue
        before = current.get(key) or running.get(key) or Moments.empty(block.shape[1])
        current[key] = before.merge(Moments.of(block[i]))  # a new object: a snapshot
        row_keys.append(f"row {i}")
        stats[f"row {i}"] = current[key]
        clips.append(current[key].count)
    return RowStats(row_keys, stats, clips, [(running, k, m) for k, m in current.items()])
