"""The vector cache: the vectors the grid's cells read, held in memory as one matrix per
speech encoder and per (split, fitted text encoder), filled from the feature store.

Speech vectors depend only on the clip, so each speech encoder runs once over the union
of clips any cell needs. No test or val sentence ever shapes a fitted text encoder:

- one that learns from text alone (``kiwi-tfidf``: vocabulary, IDF, SVD) is fitted once
  per split or fold on that split's *whole* train part, before per-cell sampling, and
  every cell of the split reads the same vectors. A cell trained on 50 clips per emotion
  thus uses an IDF from the full train part (unlabelled text, like a pretrained
  encoder's vocabulary), never a label beyond its 50 clips;
- one that learns from labels (``Encoder.needs_labels``, ``kiwi-sparse``) is fitted on
  each cell's own sampled train rows, its cached vectors keyed by those rows, so a cell at
  ``per_label=100`` never reads vectors built from labels it was not given.

Order ``diverse`` picks a cell's clips by their vectors, so those are read before the
cell is sampled (:func:`fill_order_vectors`): the speech vectors of the cell's speech
encoder over its split's whole train part, or for a text-only cell the text vectors of
an encoder that learns from text alone, fitted on that train part (the same vectors the
cell then trains on). A label-learning text encoder cannot choose a text-only cell's
clips: its vectors come from the sample they would choose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.plan import Cell
from emofuse.experiments.split_views import SplitView
from emofuse.modalities import SPEECH, TEXT

FEATURES_DIR = "features"


@dataclass
class CachedVectors:
    """Vectors of one encoder for some table rows: ``rows`` (sorted positions) -> matrix."""

    rows: np.ndarray
    matrix: np.ndarray | None = None
    path: str | None = None  # .npy file for worker processes

    def take(self, positions: np.ndarray) -> np.ndarray:
        matrix = self.matrix if self.matrix is not None else _mapped(self.path)
        where = np.searchsorted(self.rows, positions)
        return np.asarray(matrix[where], dtype=np.float32)

    def has(self, positions: np.ndarray) -> np.ndarray:
        if not len(self.rows):
            return np.zeros(len(positions), dtype=bool)
        where = np.minimum(np.searchsorted(self.rows, positions), len(self.rows) - 1)
        return self.rows[where] == positions


#: cache key (:func:`cache_key`) -> the vectors under it
VectorCache = dict[str, CachedVectors]

_MAPPED: dict[str, np.ndarray] = {}


def _mapped(path: str | None) -> np.ndarray:
    assert path is not None
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r")
    return _MAPPED[path]


def cache_key(modality: str, encoder: str, split: str = "", train: str = "") -> str:
    """``train``: a digest of the train rows a label-learning encoder was fitted on."""
    return f"{modality}|{encoder}|{split}|{train}"


@cache
def learns_from_labels(spec: str) -> bool:
    """Whether the text encoder ``spec`` learns from labels when fitted (building an
    encoder is cheap: models load on first use)."""
    from emofuse.encoders.base import EncoderError
    from emofuse.encoders.registry import build_encoder

    try:
        return bool(build_encoder(spec, TEXT).needs_labels)
    except EncoderError as err:
        raise GridRunError(f"encoders.text: {spec!r}: {err}") from err


def rows_digest(rows: np.ndarray) -> str:
    """A short digest of a set of table positions (order-free)."""
    ordered = np.unique(np.asarray(rows, dtype=np.int64))
    return hashlib.sha1(ordered.tobytes()).hexdigest()[:16]


def cell_blocks(cell: Cell, train_rows: np.ndarray) -> list[tuple[str, str]]:
    """(modality, cache key) of each input a cell reads, speech first (x = [A; T]).
    ``train_rows``: the cell's sampled train rows, which key a label-learning text
    encoder's vectors (it is fitted on them alone)."""
    blocks = []
    if cell.speech_encoder:
        blocks.append((SPEECH, cache_key(SPEECH, cell.speech_encoder)))
    if cell.text_encoder:
        train = rows_digest(train_rows) if learns_from_labels(cell.text_encoder) else ""
        blocks.append((TEXT, cache_key(TEXT, cell.text_encoder, cell.split_key, train)))
    return blocks


def usable_rows(cache: VectorCache, blocks: list[tuple[str, str]], rows: np.ndarray) -> np.ndarray:
    """``rows`` that have a vector in every block (extraction may have failed for some)."""
    keep = np.ones(len(rows), dtype=bool)
    for _, key in blocks:
        keep &= cache[key].has(rows)
    return rows[keep]


def order_block(cell: Cell) -> tuple[str, str]:
    """(modality, cache key) of the vectors order ``diverse`` spreads a cell's sample
    over: its speech encoder's, or a text-only cell's text encoder's (fitted on the
    split's whole train part). Raises :class:`GridRunError` for a text-only cell whose
    text encoder learns from labels."""
    if cell.speech_encoder:
        return SPEECH, cache_key(SPEECH, cell.speech_encoder)
    if learns_from_labels(cell.text_encoder):
        raise GridRunError(
            f"grid.orders: 'diverse' on text-only cells picks clips by their text vectors, "
            f"and encoders.text {cell.text_encoder!r} learns them from the labels of the "
            "sample being picked; use a text encoder that learns from text alone "
            "(e.g. kiwi-tfidf) for these cells, or another order"
        )
    return TEXT, cache_key(TEXT, cell.text_encoder, cell.split_key)


# cache key -> (modality, spec, rows to fit a text encoder on, rows to encode)
Wanted = dict[str, tuple[str, str, np.ndarray | None, set[int]]]


def fill_order_vectors(
    config: GridConfig,
    table: pd.DataFrame,
    views: dict[str, SplitView],
    cells: list[Cell],
    *,
    store_dir,
    progress: bool,
) -> tuple[VectorCache, list[str]]:
    """The vectors order ``diverse`` reads (:func:`order_block`) over the whole train
    part of each of ``cells``' splits, before the cells are sampled; never a val or
    test row."""
    wanted: Wanted = {}
    for cell in cells:
        modality, key = order_block(cell)
        spec = cell.speech_encoder if modality == SPEECH else cell.text_encoder
        train = views[cell.split_key].rows("train")
        fit_rows = train if modality == TEXT else None
        wanted.setdefault(key, (modality, spec, fit_rows, set()))[3].update(train.tolist())
    return _fill(config, table, wanted, store_dir=store_dir, progress=progress)


def fill_cell_vectors(
    config: GridConfig,
    table: pd.DataFrame,
    views: dict[str, SplitView],
    needs: list[tuple[Cell, np.ndarray, np.ndarray]],
    *,
    store_dir,
    progress: bool,
) -> tuple[VectorCache, list[str]]:
    """Extract (or read from the store) the vectors of every row each cell reads
    (``needs``: a cell, its sampled train rows, and all its rows: train sample + val +
    test) and load them into the cache. Notes name encoders that failed on some clips
    (cells leave those out)."""
    wanted: Wanted = {}
    for cell, train_rows, rows in needs:
        for modality, key in cell_blocks(cell, train_rows):
            spec = cell.speech_encoder if modality == SPEECH else cell.text_encoder
            fit_rows = None
            if modality == TEXT:  # the cell's own sample if it learns from labels
                by_cell = learns_from_labels(spec)
                fit_rows = np.unique(train_rows) if by_cell else views[cell.split_key].rows("train")
            wanted.setdefault(key, (modality, spec, fit_rows, set()))[3].update(rows.tolist())
    return _fill(config, table, wanted, store_dir=store_dir, progress=progress)


def _fill(
    config: GridConfig, table: pd.DataFrame, wanted: Wanted, *, store_dir, progress: bool
) -> tuple[VectorCache, list[str]]:
    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStore, FeatureStoreError, extract_features

    store = FeatureStore(store_dir, float16=config.encoders.float16)
    cache: VectorCache = {}
    notes: list[str] = []
    for key, (modality, spec, fit_rows, rows) in wanted.items():
        positions = np.array(sorted(rows), dtype=np.int64)
        subset = table.iloc[positions]
        fit: dict[str, Any] = {}
        if fit_rows is not None:  # never a val or test row
            fit["fit_table"] = table.iloc[fit_rows]
        try:
            encoders = extract_features(
                subset,
                **{modality: spec},
                **fit,
                store=store,
                batch_size=config.encoders.batch_size,
                workers=config.encoders.workers,
                progress=progress,
            )
        except (EncoderError, FeatureStoreError) as err:  # a bad spec names its config key
            raise GridRunError(f"encoders.{modality}: {spec!r}: {err}") from err
        encoder = encoders[modality]
        ok = store.available(subset, encoder)
        if not ok.all():
            notes.append(
                f"{encoder.modality} {encoder.spec}: no vector for {int((~ok).sum())} clips "
                "(extraction failed); cells leave them out"
            )
        cache[key] = CachedVectors(positions[ok], store.get(subset[ok], encoder))
    return cache, notes
