"""The paper's sampling recipe: N utterances per emotion, taken at random, shortest-first
or longest-first, optionally after de-duplicating the text; and two more selections:
``diverse`` (k-center greedy on standardised speech vectors, so the N clips spread over
the vector space) and ``speaker-balanced`` (round robin over speakers).

Every function is pure: it takes an utterance table and returns a new one (index reset,
original columns kept, rows grouped by label in the corpus's class order).
"""

from __future__ import annotations

import warnings
from typing import Literal, TypedDict, Unpack

import numpy as np
import pandas as pd

from emofuse.corpus.table import require_columns
from emofuse.labels import label_order
from emofuse.text import normalize_text, normalize_texts

__all__ = [
    "ORDERS",
    "SORT_KEYS",
    "SampleOptions",
    "SamplingShortfallWarning",
    "dedupe_text",
    "has_speakers",
    "k_center_order",
    "longest_first",
    "normalize_text",
    "normalize_texts",
    "random_first",
    "round_robin_order",
    "sample_per_label",
    "sample_train_part",
    "sampling_summary",
    "shortest_first",
]

ORDERS = ("random", "shortest", "longest", "diverse", "speaker-balanced")
SORT_KEYS = ("duration_s", "text_length")

Order = Literal["random", "shortest", "longest", "diverse", "speaker-balanced"]
SortKey = Literal["duration_s", "text_length"]


class SamplingShortfallWarning(UserWarning):
    """A label had fewer utterances than asked for; all of them were taken."""


class SampleOptions(TypedDict, total=False):
    """The keyword options of :func:`sample_per_label`, which :func:`sample_train_part`
    takes and passes on (see there for their meaning and defaults)."""

    order: Order
    by: SortKey | None
    dedupe_text: bool
    seed: int
    vectors: np.ndarray | None


def dedupe_text(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Keep one utterance per normalised text (across labels and speakers).

    Which one survives is a seeded random choice (same seed, same choice); the kept rows
    stay in their original order. Rows whose text is empty are all kept: an empty
    transcript means "no text", not "the same sentence".
    """
    return _dedupe(table, seed=seed)


def _dedupe(table: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    # A separate name because sample_per_label's `dedupe_text` flag shadows the function.
    return table.loc[_dedupe_mask(table, seed=seed)].reset_index(drop=True)


def _dedupe_mask(table: pd.DataFrame, *, seed: int) -> np.ndarray:
    _require(table, ["text"], "dedupe_text")
    keys = normalize_texts(table["text"]).to_numpy()
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(table))
    first_seen = ~pd.Series(keys[shuffled]).duplicated().to_numpy()
    keep = np.zeros(len(table), dtype=bool)
    keep[shuffled[first_seen]] = True
    keep |= keys == ""
    return keep


def sample_per_label(
    table: pd.DataFrame,
    per_label: int | None,
    *,
    order: Order = "random",
    by: SortKey | None = None,
    dedupe_text: bool = False,
    seed: int = 0,
    vectors: np.ndarray | None = None,
) -> pd.DataFrame:
    """Take ``per_label`` utterances of every label (all of them when ``None``).

    ``order``: ``"random"`` (seeded), ``"shortest"`` or ``"longest"`` first, measured by
    ``by``: ``"duration_s"`` (audio) or ``"text_length"`` (characters of the normalised
    text, for text-only corpora). Ties are broken by a seeded shuffle followed by a
    stable sort, so the result is deterministic for a seed. With ``dedupe_text`` the
    table is de-duplicated (:func:`dedupe_text`, same seed) before sampling.

    ``"diverse"`` needs ``vectors`` (one row per table row, e.g. the clips' speech
    vectors from the feature store): they are standardised over the table, and within
    each label k-center greedy picks a seeded random first clip, then again and again the
    clip farthest from those already picked. ``"speaker-balanced"`` needs a ``speaker``
    column naming at least one speaker (:func:`has_speakers`): within each label,
    speakers in a seeded random order take turns, each giving a random clip of its own
    until it has none left.

    A label with fewer than ``per_label`` utterances gives all it has: a
    :class:`SamplingShortfallWarning` is raised and ``result.attrs["shortfall"]`` maps
    each such label to the number it had (0 when de-duplication removed all of its
    rows: the sentence was kept under another label). ``attrs["rows_before_dedupe"]``
    and ``attrs["rows_after_dedupe"]`` give the table size around de-duplication.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    if by is None:  # duration when the table has any, else text length (text-only corpora)
        from emofuse.corpus.text_only import default_sort_key

        by = default_sort_key(table)
    if by not in SORT_KEYS:
        raise ValueError(f"by must be one of {', '.join(SORT_KEYS)}, not {by!r}")
    if per_label is not None and (not isinstance(per_label, int | np.integer) or per_label < 1):
        raise ValueError(f"per_label must be a positive integer or None, not {per_label!r}")
    _require(table, ["label"], "sample_per_label")
    # vectors are read by "diverse" only (callers may pass them for every order)
    vectors = _check_vectors(vectors, len(table)) if order == "diverse" else None
    if order == "speaker-balanced" and not has_speakers(table):
        _require(table, ["speaker"], "sample_per_label(order='speaker-balanced')")
        raise ValueError(
            "order='speaker-balanced' needs speakers: every row's speaker is empty "
            "(a corpus without speaker names)"
        )
    # Labels come from the table before de-duplication so that a label whose every
    # sentence also appears under another label shows up as a shortfall of 0.
    all_labels = label_order(table["label"].astype(str))
    rows_in = len(table)
    if dedupe_text:
        keep = _dedupe_mask(table, seed=seed)
        table = table.loc[keep].reset_index(drop=True)
        vectors = vectors[keep] if vectors is not None else None

    keys: np.ndarray | None = None
    if order in ("shortest", "longest"):
        if by == "duration_s":
            _require(table, ["duration_s"], "sample_per_label")
            keys = pd.to_numeric(table["duration_s"], errors="coerce").to_numpy(dtype=float)
            missing = int(np.isnan(keys).sum())
            if missing:
                raise ValueError(
                    f"{missing} of {len(table)} rows have no duration_s, so {order}-first by "
                    "duration is undefined; use by='text_length' for text-only corpora"
                )
        else:
            _require(table, ["text"], "sample_per_label")
            keys = normalize_texts(table["text"]).str.len().to_numpy(dtype=float)
        if order == "longest":
            keys = -keys

    rng = np.random.default_rng(seed)
    labels = table["label"].astype(str).to_numpy()
    standardised = _standardise(vectors) if vectors is not None else None
    speakers = table["speaker"].astype(str).to_numpy() if order == "speaker-balanced" else None
    chosen: list[np.ndarray] = []
    shortfall: dict[str, int] = {}
    for label in all_labels:
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        if keys is not None:
            rows = rows[np.argsort(keys[rows], kind="stable")]
        elif standardised is not None:
            rows = rows[k_center_order(standardised[rows], per_label)]
        elif speakers is not None:
            rows = rows[round_robin_order(speakers[rows], rng)]
        if per_label is not None:
            if len(rows) < per_label:
                shortfall[label] = len(rows)
            rows = rows[:per_label]
        chosen.append(rows)

    picked = np.concatenate(chosen) if chosen else np.array([], dtype=int)
    out = table.iloc[picked].reset_index(drop=True)
    out.attrs["shortfall"] = shortfall
    out.attrs["rows_before_dedupe"] = rows_in
    out.attrs["rows_after_dedupe"] = len(table)
    if shortfall:
        warnings.warn(
            f"{per_label} clips per emotion asked for: "
            + ", ".join(f"{label!r} has only {n}" for label, n in shortfall.items())
            + (" after de-duplication" if dedupe_text else "")
            + "; took all of them",
            SamplingShortfallWarning,
            stacklevel=2,
        )
    return out


def sample_train_part(
    table: pd.DataFrame, per_label: int | None, **options: Unpack[SampleOptions]
) -> pd.DataFrame:
    """:func:`sample_per_label` over the ``part == "train"`` rows only; ``options`` are
    its keyword options (``order``, ``by``, ``dedupe_text``, ``seed``, ``vectors``).

    Rows of the other parts (``val``, ``test``, ...) pass through unchanged, so a sampled
    training set is still scored on the full held-out parts. The result holds the sampled
    training rows (grouped by label) followed by the other rows in their original order,
    index reset; ``attrs`` are those of the training sample. A table without a ``part``
    column is sampled whole. ``vectors`` (for ``"diverse"``) are aligned with ``table``.
    """
    if "part" not in table.columns:
        return sample_per_label(table, per_label, **options)
    is_train = table["part"].astype(str).to_numpy() == "train"
    if not is_train.any():
        raise ValueError(
            "sample_train_part: no rows with part == 'train'; parts present: "
            f"{sorted(table['part'].astype(str).unique())}"
        )
    if options.get("order") == "diverse":
        options["vectors"] = _check_vectors(options.get("vectors"), len(table))[is_train]
    train = sample_per_label(table.loc[is_train], per_label, **options)
    out = pd.concat([train, table.loc[~is_train]], ignore_index=True)
    out.attrs = dict(train.attrs)
    return out


def has_speakers(table: pd.DataFrame) -> bool:
    """Whether any row names its speaker (what ``speaker-balanced`` takes turns over)."""
    if "speaker" not in table.columns:
        return False
    return bool((table["speaker"].fillna("").astype(str).str.strip() != "").any())


def k_center_order(
    points: np.ndarray, k: int | None = None, *, picked_before: np.ndarray | None = None
) -> np.ndarray:
    """Positions of ``points`` in k-center greedy order: the first point, then repeatedly
    the point farthest (Euclidean) from all picked so far; the first ``k`` are returned
    (all when ``None``). Ties go to the earlier row, so the caller's row order (a seeded
    shuffle) decides the start and the ties. ``picked_before``: points chosen earlier (same
    columns, e.g. clips already labelled), counted as picked, so the first pick is the
    point farthest from them."""
    n = len(points)
    k = n if k is None else min(k, n)
    if k == 0:
        return np.zeros(0, dtype=int)
    points = np.asarray(points, dtype=np.float64)
    before = np.zeros((0, points.shape[1])) if picked_before is None else picked_before
    if len(before):
        squares, nearest = (points**2).sum(axis=1), np.full(n, np.inf)
        for start in range(0, len(before), 256):  # memory: n x 256 distances at a time
            block = np.asarray(before[start : start + 256], dtype=np.float64)
            gaps = squares[:, None] - 2 * points @ block.T + (block**2).sum(axis=1)[None, :]
            nearest = np.minimum(nearest, gaps.min(axis=1))
        distance = np.sqrt(np.maximum(nearest, 0.0))
        picked = [int(np.argmax(distance))]
        distance = np.minimum(distance, np.linalg.norm(points - points[picked[0]], axis=1))
    else:
        picked = [0]
        distance = np.linalg.norm(points - points[0], axis=1)
    # A picked point is never picked again, even where the rest coincide with it
    # (duplicate vectors: the same sentence, the same clip).
    distance[picked[0]] = -1.0
    for _ in range(1, k):
        nxt = int(np.argmax(distance))
        picked.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
        distance[nxt] = -1.0
    return np.asarray(picked, dtype=int)


def round_robin_order(speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in round-robin order over speakers: speakers take turns in a random order
    (``rng``), each giving its next clip in the caller's row order, until all are used."""
    names = pd.unique(np.asarray(speakers))
    names = names[rng.permutation(len(names))]
    queues = [list(np.flatnonzero(speakers == name)) for name in names]
    out: list[int] = []
    depth = 0
    while len(out) < len(speakers):
        out.extend(queue[depth] for queue in queues if depth < len(queue))
        depth += 1
    return np.asarray(out, dtype=int)


def _check_vectors(vectors: np.ndarray | None, n: int) -> np.ndarray:
    if vectors is None:
        raise ValueError(
            "order='diverse' needs vectors: one speech vector per table row "
            "(e.g. FeatureStore.get(table, encoder))"
        )
    data = np.asarray(vectors, dtype=np.float64)
    if data.ndim != 2 or len(data) != n:
        raise ValueError(
            f"vectors must be a matrix with one row per table row ({n}), got shape {data.shape}"
        )
    if not np.isfinite(data).all():
        raise ValueError("vectors hold NaN/inf values")
    return data


def _standardise(vectors: np.ndarray) -> np.ndarray:
    std = vectors.std(axis=0)
    return (vectors - vectors.mean(axis=0)) / np.where(std < 1e-8, 1.0, std)


def random_first(table: pd.DataFrame, per_label: int | None, **kw) -> pd.DataFrame:
    """``per_label`` utterances of each label chosen at random (seeded)."""
    return sample_per_label(table, per_label, order="random", **kw)


def shortest_first(table: pd.DataFrame, per_label: int | None, **kw) -> pd.DataFrame:
    """The ``per_label`` shortest utterances of each label."""
    return sample_per_label(table, per_label, order="shortest", **kw)


def longest_first(table: pd.DataFrame, per_label: int | None, **kw) -> pd.DataFrame:
    """The ``per_label`` longest utterances of each label."""
    return sample_per_label(table, per_label, order="longest", **kw)


def sampling_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per label: clip count, total / mean / min / max duration (s), distinct normalised
    texts and speakers; rows in the corpus's class order."""
    _require(table, ["label"], "sampling_summary")
    frame = pd.DataFrame(
        {
            "label": table["label"].astype(str).to_numpy(),
            "duration_s": pd.to_numeric(table["duration_s"], errors="coerce").to_numpy()
            if "duration_s" in table
            else np.nan,
            "text": normalize_texts(table["text"]).to_numpy() if "text" in table else "",
            "speaker": table["speaker"].astype(str).to_numpy() if "speaker" in table else "",
        }
    )
    grouped = frame.groupby("label", sort=False)
    summary = pd.DataFrame(
        {
            "count": grouped.size(),
            "total_duration_s": grouped["duration_s"].sum(min_count=1),
            "mean_duration_s": grouped["duration_s"].mean(),
            "min_duration_s": grouped["duration_s"].min(),
            "max_duration_s": grouped["duration_s"].max(),
            "texts": grouped["text"].agg(lambda s: s[s != ""].nunique()),
            "speakers": grouped["speaker"].agg(lambda s: s[s != ""].nunique()),
        }
    )
    summary = summary.reindex(label_order(frame["label"]))
    summary.index.name = "label"
    return summary


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    require_columns(table, columns, what, ValueError)
