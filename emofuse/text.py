"""Text in one place: what an encoder sees, and when two transcripts count as the same.

Two forms, on purpose:
- :func:`clean_text` is what every text encoder is given, and what the feature store keys
  on (through :func:`text_key`), in training, evaluation, prediction and serving alike.
  It keeps punctuation and case: ``!`` and ``?`` carry emotion.
- :func:`normalize_text` is looser (casefolded, edge punctuation stripped) and serves
  de-duplication and splits only, where "정말 좋아요!" and "정말 좋아요?" are one script.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pandas as pd

#: Unicode categories stripped from the ends of a sentence by :func:`normalize_text`:
#: punctuation (P*) and the math / modifier symbols that Korean transcripts trail with
#: ("좋아요~", "^^"). Other symbols (emoji, currency) are kept: they can carry meaning.
_EDGE_CATEGORIES = ("P", "Sm", "Sk")
_SPACES = re.compile(r"\s+")


def _is_missing(text: object) -> bool:
    return text is None or (isinstance(text, float) and text != text)


def clean_text(text: object) -> str:
    """The form a text encoder sees: NFC, white space collapsed to single spaces, ends
    stripped. ``None``/NaN give ``""``. Idempotent."""
    if _is_missing(text):
        return ""
    return " ".join(unicodedata.normalize("NFC", str(text)).split())


def text_key(text: object) -> str:
    """The feature-store key of a transcript: sha1 of exactly what the encoder sees."""
    return hashlib.sha1(clean_text(text).encode("utf-8")).hexdigest()


def _is_edge_noise(char: str) -> bool:
    if char.isspace():
        return True
    category = unicodedata.category(char)
    return category.startswith(_EDGE_CATEGORIES[0]) or category in _EDGE_CATEGORIES[1:]


def normalize_text(text: object) -> str:
    """The key under which two transcripts count as the same sentence (de-duplication and
    splits only; never a feature key).

    Steps: Unicode NFC (so decomposed and precomposed Hangul agree), casefold, white
    space collapsed to single spaces, then punctuation and math/modifier symbols
    (``. ! ? , … ~ ^`` and their full-width forms) stripped from both ends, so that
    ``"오늘 정말  좋아요!"`` and ``"오늘 정말 좋아요."`` share a key. Punctuation inside
    the sentence is kept. ``None``/NaN give ``""``. The result is idempotent.
    """
    if _is_missing(text):
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
