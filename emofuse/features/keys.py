"""Which stored vector a table row reads: its key.

Speech is keyed by utterance id. Text is keyed by :func:`emofuse.text.text_key`, the sha1
of exactly what the encoder sees (:func:`emofuse.text.clean_text`), so rows with the
same cleaned transcript share one vector (a script read by 40 speakers is encoded once)
and texts that differ in anything the encoder sees ("좋아요!" vs "좋아요?") never do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from emofuse.corpus.table import require_columns
from emofuse.features.io import FeatureStoreError
from emofuse.modalities import ENCODER_MODALITIES, SPEECH
from emofuse.text import clean_text, text_key

__all__ = [
    "SPEECH_KEY_SCHEME",
    "TEXT_KEY_SCHEME",
    "clean_text",
    "key_items",
    "row_keys",
    "text_key",
]

SPEECH_KEY_SCHEME = "utterance id"
TEXT_KEY_SCHEME = "sha1(emofuse.text.clean_text(text))"


def _require(table: pd.DataFrame, columns: list[str]) -> None:
    require_columns(table, columns, "feature store", FeatureStoreError)


def _check_modality(modality: str) -> None:
    if modality not in ENCODER_MODALITIES:
        raise FeatureStoreError(
            f"modality must be one of {', '.join(ENCODER_MODALITIES)}, not {modality!r}"
        )


def _per_distinct(texts: pd.Series, function: Callable[[object], str]) -> np.ndarray:
    """``function`` of every text, computed once per distinct value (corpora repeat scripts)."""
    values = texts.fillna("").to_numpy(dtype=object)  # NaN is "" to both functions
    mapping = {v: function(v) for v in pd.unique(values)}
    return np.asarray([mapping[v] for v in values], dtype=object)


def _text_keys(texts: pd.Series) -> np.ndarray:
    return _per_distinct(texts, text_key)


def row_keys(table: pd.DataFrame, modality: str) -> np.ndarray:
    """The store key of every table row, in table order."""
    _check_modality(modality)
    if modality == SPEECH:
        _require(table, ["id"])
        return table["id"].astype(str).to_numpy(dtype=object)
    _require(table, ["text"])
    return _text_keys(table["text"])


def key_items(table: pd.DataFrame, modality: str) -> pd.DataFrame:
    """One row per distinct key: ``key``, ``payload`` (audio path, or the cleaned text the
    encoder is given), ``length`` (for batching) and ``ids`` (the utterances it serves)."""
    _check_modality(modality)
    if modality == SPEECH:
        _require(table, ["id", "audio"])
        keys = table["id"].astype(str)
        if keys.duplicated().any():
            dupes = keys[keys.duplicated()].unique()[:5]
            raise FeatureStoreError(f"duplicate utterance ids in the table, e.g. {list(dupes)}")
        length = (  # NaN: unknown (batching caps such batches by count)
            pd.to_numeric(table["duration_s"], errors="coerce").astype(float)
            if "duration_s" in table
            else pd.Series(np.nan, index=table.index)
        )
        return pd.DataFrame(
            {
                "key": keys.to_numpy(),
                "payload": table["audio"].astype(str).to_numpy(),
                "length": length.to_numpy(),
                "ids": [(k,) for k in keys],
            }
        )
    _require(table, ["id", "text"])
    frame = pd.DataFrame(
        {
            "id": table["id"].astype(str).to_numpy(),
            "key": _text_keys(table["text"]),
            "payload": _per_distinct(table["text"], clean_text),
        }
    )
    # Every row of a key has the same payload (the key is its hash), so any row will do.
    grouped = frame.sort_values("id", kind="stable").groupby("key", sort=True)
    payload = grouped["payload"].first()
    return pd.DataFrame(
        {
            "key": payload.index.to_numpy(),
            "payload": payload.to_numpy(),
            "length": payload.str.len().to_numpy(dtype=float),
            "ids": grouped["id"].agg(tuple).loc[payload.index].to_numpy(),
        }
    )
