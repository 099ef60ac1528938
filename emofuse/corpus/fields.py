"""Reading the fields of a label file: dotted field lookup, label and name
normalisation (composed Hangul, the Korean seven), script ids and split names.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from emofuse.labels import KOREAN_EMOTIONS
from emofuse.text import normalize_text


def get_field(obj: Any, dotted: str) -> Any:
    """``get_field(d, "전사정보.OrgLabelText")`` -> the nested value, or None."""
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def first_field(obj: dict, names: Sequence[str]) -> tuple[str | None, Any]:
    """The first of ``names`` (dotted paths) present and not None: (name, value)."""
    for name in names:
        value = get_field(obj, name)
        if value is not None:
            return name, value
    return None, None


def nfc(text: str) -> str:
    """Composed Hangul: names from zips made on macOS arrive decomposed (NFD)."""
    return unicodedata.normalize("NFC", text)


# LabelSet.canonical rebuilds its lookup per call; a scan does it 450k times.
_KOREAN_LOOKUP = {name.casefold(): name for name in KOREAN_EMOTIONS.names} | {
    alias.strip().casefold(): name for alias, name in KOREAN_EMOTIONS.aliases.items()
}


def korean_label(raw: object) -> str | None:
    """The canonical name for one of the Korean seven (English or Korean name), else None."""
    return _KOREAN_LOOKUP.get(nfc(str(raw)).strip().casefold())


def text_script_id(text: str) -> str:
    """A stable script id from the sentence itself, for corpora that number no scripts.
    Two readings count as one script when :func:`emofuse.text.normalize_text` (the
    package's one definition of "the same sentence") gives them the same key."""
    norm = normalize_text(text)
    if not norm:
        return ""
    return "t" + hashlib.blake2b(norm.encode("utf-8"), digest_size=6).hexdigest()


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def trailing_number(stem: str) -> str:
    """``"0001_G1A3E1S0C0_ABC_000123"`` -> ``"000123"``; ``""`` when none."""
    match = _TRAILING_NUMBER.search(stem)
    return match.group(1) if match else ""


_SPLITS = {
    "train": "train",
    "training": "train",
    "학습": "train",
    "훈련": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "검증": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "평가": "test",
}
_SPLIT_PREFIX = re.compile(r"^\d+[._\-\s]*")


def split_name(name: str) -> str | None:
    """A corpus split name (``Training``, ``1.Validation``, ``dev``, ``검증``) normalised to
    train / validation / test, or None when ``name`` is not a split name."""
    key = _SPLIT_PREFIX.sub("", name.strip()).casefold()
    return _SPLITS.get(key)


def split_from_parts(parts: Iterable[str]) -> str:
    """The split named by the first directory in ``parts`` that names one, else ''."""
    for part in parts:
        found = split_name(part)
        if found:
            return found
    return ""
