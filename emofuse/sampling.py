"""The paper's sampling recipe: N utterances per emotion, taken at random, shortest-first
or longest-first, optionally after de-duplicating the text.

Every function is pure: it takes an utterance table and returns a new one (index reset,
original columns kept, rows grouped by label in the corpus's class order).
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from typing import Literal

import numpy as np
import pandas as pd

from emofuse.labels import label_order

ORDERS = ("random", "shortest", "longest")
SORT_KEYS = ("duration_s", "text_length")

Order = Literal["random", "shortest", "longest"]
SortKey = Literal["duration_s", "text_length"]

#: Unicode categories stripped from the ends of a sentence: punctuation (P*) and the
#: math / modifier symbols that Korean transcripts trail with ("좋아요~", "^^").
#: Other symbols (emoji, currency) are kept: they can carry meaning.
_EDGE_CATEGORIES = ("P", "Sm", "Sk")
_SPACES = re.compile(r"\s+")


class SamplingShortfallWarning(UserWarning):
    """A label had fewer utterances than asked for; all of them were taken."""


def _is_edge_noise(char: str) -> bool:
    if char.isspace():
        return True
    category = unicodedata.category(char)
    return category.startswith(_EDGE_CATEGORIES[0]) or category in _EDGE_CATEGORIES[1:]


def normalize_text(text: object) -> str:
    """The key under which two transcripts count as the same sentence.

    Steps: Unicode NFC (so decomposed and precomposed Hangul agree), casefold, white
    space collapsed to single spaces, then punctuation and math/modifier symbols
    (``. ! ? , … ~ ^`` and their full-width forms) stripped from both ends, so that
    ``"오늘 정말  좋아요!"`` and ``"오늘 정말 좋아요."`` share a key. Punctuation inside
    the sentence is kept. ``None``/NaN give ``""``. The result is idempotent.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    out = unicodedata.normalize("NFC", str(text))
    out = unicodedata.normalize("NFC", out.casefold())
    out = _SPACES.sub(" ", out)
    start, end = 0, len(out)
    while start < end and _is_edge_noise(out[start]):
        start += 1
    while end > start and _is_edge_noise(out[end - 1]):
        end -= 1
    return out[start:end]


def normalize_texts(texts: pd.Series) -> pd.Series:
    """:func:`normalize_text` over a column, computed once per distinct value (corpora
    repeat the same scripts thousands of times)."""
    values = texts.fillna("").astype(str)
    unique = pd.unique(values.to_numpy())
    mapping = {value: normalize_text(value) for value in unique}
    return pd.Series([mapping[v] for v in values.to_numpy()], index=texts.index, dtype=object)


def dedupe_text(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Keep one utterance per normalised text (across labels and speakers).

    Which one survives is a seeded random choice (same seed, same choice); the kept rows
    stay in their original order. Rows whose text is empty are all kept: an empty
    transcript means "no text", not "the same sentence".
    """
    return _dedupe(table, seed=seed)


def _dedupe(table: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    # A separate name because sample_per_label's `dedupe_text` flag shadows the function.
    _require(table, ["text"], "dedupe_text")
    keys = normalize_texts(table["text"]).to_numpy()
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(table))
    first_seen = ~pd.Series(keys[shuffled]).duplicated().to_numpy()
    keep = np.zeros(len(table), dtype=bool)
    keep[shuffled[first_seen]] = True
    keep |= keys == ""
    return table.loc[keep].reset_index(drop=True)


def sample_per_label(
    table: pd.DataFrame,
    per_label: int | None,
    *,
    order: Order = "random",
    by: SortKey = "duration_s",
    dedupe_text: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Take ``per_label`` utterances of every label (all of them when ``None``).

    ``order``: ``"random"`` (seeded), ``"shortest"`` or ``"longest"`` first, measured by
    ``by``: ``"duration_s"`` (audio) or ``"text_length"`` (characters of the normalised
    text, for text-only corpora). Ties are broken by a seeded shuffle followed by a
    stable sort, so the result is deterministic for a seed. With ``dedupe_text`` the
    table is de-duplicated (:func:`dedupe_text`, same seed) before sampling.

    A label with fewer than ``per_label`` utterances gives all it has: a
    :class:`SamplingShortfallWarning` is raised and ``result.attrs["shortfall"]`` maps
    each such label to the number it had (0 when de-duplication removed all of its
    rows: the sentence was kept under another label). ``attrs["rows_before_dedupe"]``
    and ``attrs["rows_after_dedupe"]`` give the table size around de-duplication.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    if by not in SORT_KEYS:
        raise ValueError(f"by must be one of {', '.join(SORT_KEYS)}, not {by!r}")
    if per_label is not None and (not isinstance(per_label, int | np.integer) or per_label < 1):
        raise ValueError(f"per_label must be a positive integer or None, not {per_label!r}")
    _require(table, ["label"], "sample_per_label")
    # Labels come from the table before de-duplication so that a label whose every
    # sentence also appears under another label shows up as a shortfall of 0.
    all_labels = label_order(table["label"].astype(str))
    rows_in = len(table)
    if dedupe_text:
        table = _dedupe(table, seed=seed)

    keys: np.ndarray | None = None
    if order != "random":
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
    chosen: list[np.ndarray] = []
    shortfall: dict[str, int] = {}
    for label in all_labels:
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        if keys is not None:
            rows = rows[np.argsort(keys[rows], kind="stable")]
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
            f"per_label={per_label}: "
            + ", ".join(f"{label!r} has only {n}" for label, n in shortfall.items())
            + (" after de-duplication" if dedupe_text else "")
            + "; took all of them",
            SamplingShortfallWarning,
            stacklevel=2,
        )
    return out


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
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what}: the table has no {', '.join(missing)} column(s); it has {list(table.columns)}"
        )
