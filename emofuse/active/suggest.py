"""`emofuse suggest`: an unlabelled pool and a bundle -> the clips to label next, with
the model's guess and a short reason for each.

Clips already labelled are never suggested: those with a label in the pool, those with a
standing answer in answers.csv (``exclude``), and those the bundle was trained on. They
still count: the hybrid strategy gives its picks to the emotions and speakers with the
fewest labels, and ``diverse`` starts far from them. The output keeps the pool's own
columns (its ``id`` column filled with the ids `label` and `prepare --answers` use) and
adds :data:`ADDED_COLUMNS`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.active.pool_scores import score_pool
from emofuse.active.strategies import (
    DEFAULT_STRATEGY,
    MAX_VECTOR_ROWS,
    check_strategy,
    rank,
    top_two,
    vector_rows,
)
from emofuse.corpus.pool import Pool
from emofuse.features import FeatureStore
from emofuse.head.speaker_stats import speaker_key
from emofuse.outputs import TableWriter, table_format, write_whole

#: What `suggest` adds to the pool's columns.
ADDED_COLUMNS = ("rank", "predicted", "p_predicted", "second", "p_second", "margin", "reason")


@dataclass
class Suggestions:
    """The clips to label next (``table``, in the order to label them) and what was left
    out on the way."""

    table: pd.DataFrame
    strategy: str
    #: clips the bundle scored that had no label yet (what the picks came from)
    candidates: int
    #: clips left out as already labelled (pool label, answer, or trained on)
    labelled: int
    #: clips the bundle could not score (``id``, ``reason``)
    dropped: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    #: the pool manifest's folder, which its relative audio paths start from
    pool_dir: Path | None = None
    #: the output column holding audio paths (the manifest's name for it), if any
    audio_column: str | None = None


def suggest(
    bundle: Any,
    pool: Pool,
    n: int,
    *,
    store: FeatureStore | str | Path,
    strategy: str = DEFAULT_STRATEGY,
    exclude: Collection[str] = (),
    answers: Mapping[str, str] | None = None,
    speaker_column: str | None = None,
    seed: int = 0,
    progress: bool = False,
    batch_size: int = 8,
    workers: int = 1,
) -> Suggestions:
    """Up to ``n`` clips of ``pool`` to label next, ranked by ``strategy``.

    ``exclude``: ids already answered (:func:`emofuse.corpus.answers.answered_ids`);
    ``answers``: their labels where one is agreed (``resolve_answers(path).labels``), so
    the emotions they cover count as labelled. ``speaker_column``: the pool's column that
    names each clip's speaker (default: the column read as ``speaker``), used to adapt a
    bundle that adapts to speakers and to spread the hybrid's picks over speakers."""
    check_strategy(strategy)
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"the number of clips to suggest must be a positive integer, not {n!r}")
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    table = pool.table.reset_index(drop=True)
    notes: list[str] = []
    speakers = _speakers(pool, speaker_column)
    scores = score_pool(
        bundle, table, store, speakers=speakers, source=str(pool.source),
        progress=progress, batch_size=batch_size, workers=workers,
    )  # fmt: skip
    if scores.adapted:
        notes.append(
            f"adapted to {len(scores.stats)} speakers by the statistics of their clips in the pool"
        )
    ids = table["id"].astype(str).to_numpy()
    known = _known_labels(table, exclude, answers, bundle)
    done = np.isin(ids[scores.rows], list(known))
    todo = np.flatnonzero(~done)
    labelled_rows = scores.rows[done]
    classes = {label: i for i, label in enumerate(bundle.labels)}
    labelled_classes = np.asarray(
        [classes.get(known[i], -1) for i in ids[labelled_rows]], dtype=int
    )
    unknown = sorted({known[i] for i in ids[labelled_rows]} - set(classes) - {""})
    if unknown:
        notes.append(
            f"labels the model does not know ({', '.join(unknown[:5])}) do not count toward "
            "its emotions' turns"
        )
    proba = scores.proba[todo]
    names = np.asarray([s or "" for s in speakers], dtype=object) if speakers else None
    vectors = labelled_vectors = rows_with_vectors = None
    if strategy == "diverse":
        rows_with_vectors = vector_rows(strategy, proba, seed=seed)
        if len(todo) > MAX_VECTOR_ROWS:
            notes.append(f"diverse spreads over a random {MAX_VECTOR_ROWS} of {len(todo)} clips")
        vectors = scores.vectors(todo[rows_with_vectors])
        labelled = np.flatnonzero(done)
        if len(labelled) > MAX_VECTOR_ROWS:
            labelled = np.random.default_rng(seed).choice(labelled, MAX_VECTOR_ROWS, replace=False)
        labelled_vectors = scores.vectors(np.sort(labelled))
    picks = rank(
        strategy, int(n), proba, vectors=vectors, rows=rows_with_vectors,
        labelled_vectors=labelled_vectors, labelled_classes=labelled_classes,
        speakers=None if names is None else names[scores.rows[todo]],
        labelled_speakers=None if names is None else names[labelled_rows],
        seed=seed,
    )  # fmt: skip
    chosen = scores.rows[todo[picks]]
    out = _output_rows(pool, chosen, proba[picks], bundle.labels, strategy)
    out["reason"] = _reasons(
        strategy, proba[picks], bundle.labels, labelled_classes,
        None if names is None else names[chosen],
        None if names is None else names[labelled_rows],
    )  # fmt: skip
    if len(chosen) < n:
        notes.append(f"only {len(chosen)} clips could be suggested (asked for {n})")
    return Suggestions(
        out, strategy, len(todo), int(done.sum()), scores.dropped, notes,
        pool_dir=Path(pool.source).parent, audio_column=pool.columns.get("audio"),
    )  # fmt: skip


def write_suggestions(suggestions: Suggestions, path: str | Path) -> None:
    """The suggestions to ``path`` (CSV, TSV or Parquet as its extension says), whole or
    not at all. Relative audio paths are rewritten relative to the output's folder, so
    the file is itself a pool (`emofuse label next.csv`) wherever it is written."""
    fmt = table_format(path)
    table = suggestions.table
    column = suggestions.audio_column
    if column in table.columns and suggestions.pool_dir is not None:
        table = table.assign(
            **{column: [_rebased(a, suggestions.pool_dir, Path(path)) for a in table[column]]}
        )
    with write_whole(path) as partial, TableWriter(partial, fmt) as writer:
        writer.write(table)


def _rebased(audio: object, pool_dir: Path, output: Path) -> object:
    """A relative audio path of the pool, relative to the output's folder instead."""
    if not isinstance(audio, str) or not audio.strip() or Path(audio).is_absolute():
        return audio
    target = (pool_dir / audio).resolve()
    try:
        return os.path.relpath(target, output.resolve().parent)
    except ValueError:  # another drive (Windows): no relative path leads there
        return str(target)


def _speakers(pool: Pool, column: str | None) -> list[str | None] | None:
    """One speaker name per pool row (None: blank), or None when the pool names none."""
    if column is None:
        values = pool.table["speaker"] if "speaker" in pool.table.columns else None
    else:
        found = _find_column(list(pool.original.columns), column)
        if found is None:
            raise ValueError(
                f"{pool.source}: no column {column!r} to read speakers from (columns: "
                f"{', '.join(map(str, pool.original.columns))})"
            )
        values = pool.original[found]
    if values is None:
        return None
    names = [speaker_key(v) for v in values.tolist()]
    return names if any(name is not None for name in names) else None


def _find_column(columns: list[str], name: str) -> str | None:
    if name in columns:
        return name
    matches = [c for c in columns if str(c).strip().lower() == name.strip().lower()]
    return matches[0] if len(matches) == 1 else None


def _known_labels(
    table: pd.DataFrame,
    exclude: Collection[str],
    answers: Mapping[str, str] | None,
    bundle: Any,
) -> dict[str, str]:
    """id -> label ('' when unknown) of every clip that counts as labelled."""
    known: dict[str, str] = dict.fromkeys(bundle.training_ids(), "")
    known.update(dict.fromkeys(map(str, exclude), ""))
    known.update({str(k): str(v) for k, v in (answers or {}).items()})
    labelled = table["label"].astype(str) != ""
    rows = table.loc[labelled]
    known.update(zip(rows["id"].astype(str), rows["label"].astype(str), strict=True))
    return known


def _output_rows(
    pool: Pool, rows: np.ndarray, proba: np.ndarray, labels: list[str], strategy: str
) -> pd.DataFrame:
    """The pool's own columns of ``rows`` (ids filled in) and the model's view of them."""
    original = pool.original.iloc[rows].reset_index(drop=True)
    original = original.drop(columns=[c for c in original.columns if c in ADDED_COLUMNS])
    ids = pool.table["id"].astype(str).to_numpy()[rows]
    id_column = pool.columns.get("id", "id")
    if id_column in original.columns:
        original[id_column] = ids
    else:
        original.insert(0, "id", ids)
    tops = top_two(proba) if len(proba) else None
    names = np.asarray(labels, dtype=object)
    added = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "predicted": names[tops.first] if tops else [],
            "p_predicted": np.round(tops.p_first, 4) if tops else [],
            "second": names[tops.second] if tops else [],
            "p_second": np.round(tops.p_second, 4) if tops else [],
            "margin": np.round(tops.margin, 4) if tops else [],
        }
    )
    return pd.concat([original, added], axis=1)


def _reasons(
    strategy: str,
    proba: np.ndarray,
    labels: list[str],
    labelled_classes: np.ndarray,
    speakers: np.ndarray | None,
    labelled_speakers: np.ndarray | None,
) -> list[str]:
    """A short phrase per pick saying why it was picked (counts as they were at its turn)."""
    if not len(proba):
        return []
    tops = top_two(proba)
    per_class = Counter(int(c) for c in labelled_classes if c >= 0)
    per_speaker = Counter(s for s in (labelled_speakers if labelled_speakers is not None else ()))
    out = []
    for i in range(len(proba)):
        a, b = labels[tops.first[i]], labels[tops.second[i]]
        guess = f"{a} {tops.p_first[i]:.2f} vs {b} {tops.p_second[i]:.2f}"
        if strategy == "random":
            out.append(f"random pick; model: {guess}")
        elif strategy == "uncertainty":
            out.append(f"uncertain: {guess}")
        elif strategy == "diverse":
            out.append(f"far from the clips labelled and picked; model: {guess}")
        else:
            reason = f"uncertain: {guess}; labels so far: {a} {per_class[int(tops.first[i])]}"
            if speakers is not None and speakers[i]:
                reason += f", speaker {speakers[i]} {per_speaker[speakers[i]]}"
            out.append(reason)
        per_class[int(tops.first[i])] += 1
        if speakers is not None and speakers[i]:
            per_speaker[speakers[i]] += 1
    return out
