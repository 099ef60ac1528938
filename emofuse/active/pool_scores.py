"""A pool scored by a bundle: the model's class probabilities for every clip it can read,
through the one scoring path of every other command, and the clips' vectors on demand.

Vectors come from the feature store with the bundle's own encoders (computed once, kept,
resumed after a kill: `extract`'s rules), so a second `suggest` on the same pool encodes
nothing. The store is then read a chunk at a time, so memory holds the probabilities
(a few numbers per clip) and one chunk of vectors, whatever the pool's size; a strategy
that spreads its picks asks for the vectors of a bounded number of rows
(:data:`~emofuse.active.strategies.MAX_VECTOR_ROWS`).

A bundle that adapts to speakers scores each clip with the statistics of all the pool's
clips of its speaker (unlabelled clips, never labels; a first pass over the store), as
`predict --manifest` does; a clip with a blank speaker is scored unadapted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emofuse.features import FeatureStore
from emofuse.head.score import adapt_to_speakers, probabilities_from_features
from emofuse.head.speaker_stats import Moments, speaker_key
from emofuse.modalities import ENCODER_MODALITIES
from emofuse.predict.adapt import call_statistics

#: Rows read from the store at a time.
CHUNK_ROWS = 4096


class PoolScoringError(ValueError):
    """A pool the bundle cannot score at all (the message names the pool and the fix)."""


@dataclass
class PoolScores:
    """The rows of ``table`` the bundle could score (``ok``) and their probabilities.

    ``proba[i]`` belongs to table row ``rows[i]``; ``dropped`` lists the other rows
    (``id``, ``reason``): no audio for a model that hears, no transcript for one that
    reads, features that failed."""

    table: pd.DataFrame
    rows: np.ndarray
    proba: np.ndarray
    dropped: pd.DataFrame
    speakers: list[str | None] | None
    #: speaker statistics the clips were adapted with (empty: not adapted)
    stats: dict[str, Moments] = field(default_factory=dict)
    _bundle: Any = field(default=None, repr=False)
    _store: Any = field(default=None, repr=False)
    _centre: np.ndarray | None = field(default=None, repr=False)
    _scale: np.ndarray | None = field(default=None, repr=False)

    @property
    def adapted(self) -> bool:
        return bool(self.stats)

    def vectors(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Standardised vectors (the head's input x = [A; T], adapted to speakers as the
        scores were) of the scored rows at ``positions`` (indices into :attr:`rows`)."""
        positions = np.asarray(positions, dtype=int)
        if self._centre is None:
            self._centre, self._scale = self._moments()
        blocks = [
            (x - self._centre) / self._scale
            for x, _ in self._read(self.rows[positions], adapt=True)
        ]
        width = 0 if self._centre is None else len(self._centre)
        return np.concatenate(blocks) if blocks else np.zeros((0, width))

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every scored row's vector (one pass)."""
        count, total, squares = 0, None, None
        for x, _ in self._read(self.rows, adapt=True):
            x = x.astype(np.float64)
            total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
            squares = (x**2).sum(axis=0) if squares is None else squares + (x**2).sum(axis=0)
            count += len(x)
        if total is None or count == 0:
            width = int(self._bundle.head.input_dim)
            return np.zeros(width), np.ones(width)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return mean, np.where(std < 1e-8, 1.0, std)

    def _read(self, rows: np.ndarray, *, adapt: bool) -> Iterator[tuple[np.ndarray, list]]:
        """(x, speakers) for ``rows`` of the table, a chunk at a time."""
        yield from _read_vectors(
            self._bundle, self._store, self.table, rows, self.speakers,
            self.stats if adapt else None,
        )  # fmt: skip


def score_pool(
    bundle: Any,
    table: pd.DataFrame,
    store: FeatureStore,
    *,
    speakers: Sequence[Any] | None = None,
    source: str = "the pool",
    progress: bool = False,
    batch_size: int = 8,
    workers: int = 1,
) -> PoolScores:
    """Probabilities of every row of ``table`` (an utterance table, e.g. ``Pool.table``)
    the bundle can read; ``speakers``: one name per row (None: nothing is adapted)."""
    table = table.reset_index(drop=True)
    readable, dropped = _readable(bundle, table, source)
    encoders = bundle.encoders()
    sub = table[readable]
    ok = readable.copy()
    reasons: dict[str, str] = {}
    for modality in ENCODER_MODALITIES:
        if modality not in encoders:
            continue
        report = store.ensure(
            sub, encoders[modality], batch_size=batch_size, progress=progress, workers=workers
        )
        for failure in report.failed:
            for ident in failure.ids:
                reasons.setdefault(str(ident), f"{modality} features failed: {failure.describe()}")
        have = np.zeros(len(table), dtype=bool)
        have[np.flatnonzero(readable)] = store.available(sub, encoders[modality])
        ok &= have
    ids = table["id"].astype(str).to_numpy()
    failed = [
        {"id": ids[i], "reason": reasons.get(ids[i], "no vector in the feature store")}
        for i in np.flatnonzero(readable & ~ok)
    ]
    dropped = pd.concat([dropped, pd.DataFrame(failed, columns=["id", "reason"])])
    names = None
    if speakers is not None and getattr(bundle, "speaker_norm", None) is not None:
        names = [speaker_key(s) for s in speakers]
        if len(names) != len(table):
            raise ValueError(f"{len(table)} rows but {len(names)} speaker names")
    rows = np.flatnonzero(ok)
    stats: dict[str, Moments] = {}
    if names is not None and any(n is not None for n in names):
        for x, chunk_speakers in _read_vectors(bundle, store, table, rows, names, None):
            call_statistics(bundle.speaker_norm, x, chunk_speakers, stats)
    blocks = [
        probabilities_from_features(
            bundle, x, speakers=chunk if stats else None, speaker_stats=stats or None
        )
        for x, chunk in _read_vectors(bundle, store, table, rows, names, None)
    ]
    k = len(bundle.labels)
    proba = np.concatenate(blocks) if blocks else np.zeros((0, k), dtype=np.float32)
    return PoolScores(
        table, rows, proba, dropped.reset_index(drop=True), names if stats else None, stats,
        bundle, store,
    )  # fmt: skip


def _readable(bundle: Any, table: pd.DataFrame, source: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows holding what the bundle reads, and why the others are left out; a pool where
    no row does is a :class:`PoolScoringError`."""
    from emofuse.corpus.text_only import has_audio

    audio = has_audio(table)
    text = (table["text"].fillna("").astype(str).str.strip() != "").to_numpy()
    readable = np.ones(len(table), dtype=bool)
    why = np.full(len(table), "", dtype=object)
    if bundle.needs_audio:
        if len(table) and not audio.any():
            raise PoolScoringError(
                f"{source} has no audio (a text-only pool), and {bundle.path} is a "
                f"{bundle.modality} model that hears the clips: suggest with a text model"
            )
        why[~audio] = f"no audio (a {bundle.modality} model hears the clips)"
        readable &= audio
    if bundle.needs_text:
        if len(table) and not (text & readable).any():
            raise PoolScoringError(
                f"{source} has no clip with a transcript"
                + (" and audio" if bundle.needs_audio else "")
                + f", and {bundle.path} is a {bundle.modality} model that reads text: add a "
                "text column, or suggest with a speech model"
            )
        why[readable & ~text] = f"no transcript (a {bundle.modality} model reads text)"
        readable &= text
    ids = table["id"].astype(str).to_numpy()
    dropped = pd.DataFrame(
        {"id": ids[~readable], "reason": why[~readable].astype(str)}, columns=["id", "reason"]
    )
    return readable, dropped


def _read_vectors(
    bundle: Any,
    store: FeatureStore,
    table: pd.DataFrame,
    rows: np.ndarray,
    speakers: list[str | None] | None,
    stats: dict[str, Moments] | None,
) -> Iterator[tuple[np.ndarray, list]]:
    """x = [A; T] of ``rows`` of ``table`` from the store, a chunk at a time (adapted to
    speakers with ``stats`` when given), with the chunk's speaker names."""
    encoders = bundle.encoders()
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk_rows = rows[start : start + CHUNK_ROWS]
        chunk = table.iloc[chunk_rows]
        x = np.hstack(
            [store.get(chunk, encoders[m]) for m in ENCODER_MODALITIES if m in encoders]
        ).astype(np.float32)
        names = [speakers[i] for i in chunk_rows] if speakers is not None else [None] * len(x)
        if stats:
            x = adapt_to_speakers(bundle.speaker_norm, x, names, stats)
        yield x, names
