"""Label sets: the corpus's own classes, with canonical names and aliases.

The AI-Hub Korean corpus (dataset 466) has seven emotions; any other corpus brings its
own set, and nothing downstream assumes seven classes.

One rule says when two spellings are one label (:func:`label_key`): Unicode NFC (names
from macOS arrive decomposed), white space runs as one space, surrounding white space
dropped, case folded. ``Angry``, ``angry `` and ``ANGRY`` are one class; every label set
a corpus brings is folded by it (:func:`fold_labels`: the most frequent spelling is kept,
ties go to the first seen, and the merges are said), so a stray capital never makes a
class of its own.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def label_key(label: str) -> str:
    """The one matching form of a label: NFC, white space runs as one space, stripped,
    casefolded. Two spellings with the same key are one class."""
    return " ".join(unicodedata.normalize("NFC", str(label)).split()).casefold()


@dataclass(frozen=True)
class LabelFolding:
    """What :func:`fold_labels` decided: ``mapping`` takes every spelling seen to the one
    kept; ``merges`` lists, per kept spelling, the (spelling, count) pairs folded into it,
    the kept one first."""

    mapping: dict[str, str]
    merges: dict[str, list[tuple[str, int]]]

    def notes(self) -> list[str]:
        """One line per merge, for a scan's notes or a warning."""
        return [
            "labels "
            + ", ".join(f"{spelling!r} ({count})" for spelling, count in spellings)
            + f" are one class, {kept!r}: they differ only in case, spacing or Unicode form"
            for kept, spellings in self.merges.items()
        ]


class LabelsFoldedWarning(UserWarning):
    """A table's labels held spellings of one class (``Angry`` and ``angry``), now one."""


def fold_labels(labels: Iterable[str]) -> LabelFolding:
    """Fold the spellings of ``labels`` (one entry per row) by :func:`label_key`: each
    group of spellings keeps its most frequent one (ties: the first seen)."""
    counts = Counter(str(label) for label in labels)  # insertion order: first seen first
    groups: dict[str, list[str]] = {}
    for spelling in counts:
        groups.setdefault(label_key(spelling), []).append(spelling)
    mapping: dict[str, str] = {}
    merges: dict[str, list[tuple[str, int]]] = {}
    for spellings in groups.values():
        kept = max(spellings, key=lambda s: counts[s])  # max keeps the first of equals
        mapping.update((s, kept) for s in spellings)
        if len(spellings) > 1:
            ordered = [kept] + [s for s in spellings if s != kept]
            merges[kept] = [(s, counts[s]) for s in ordered]
    return LabelFolding(mapping, merges)


class UnknownLabelError(ValueError):
    """A label that the label set neither names nor aliases."""


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of canonical class names plus aliases that map onto them.

    Matching is by :func:`label_key` (case, spacing and Unicode form ignored), so two
    names that differ only so are refused as duplicates.
    """

    names: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len({label_key(name) for name in self.names}) != len(self.names):
            raise ValueError(
                f"duplicate label names in {self.names} (names that differ only in case, "
                "spacing or Unicode form are one label)"
            )
        for alias, target in self.aliases.items():
            if target not in self.names:
                raise ValueError(f"alias {alias!r} points at unknown label {target!r}")

    def _lookup(self) -> dict[str, str]:
        table = {label_key(name): name for name in self.names}
        table.update({label_key(a): t for a, t in self.aliases.items()})
        return table

    def canonical(self, label: str) -> str:
        """Return the canonical name for ``label`` or raise :class:`UnknownLabelError`."""
        found = self._lookup().get(label_key(str(label)))
        if found is None:
            raise UnknownLabelError(
                f"unknown label {label!r}; expected one of {', '.join(self.names)}"
                + (f" (or aliases {', '.join(sorted(self.aliases))})" if self.aliases else "")
            )
        return found

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and label_key(label) in self._lookup()

    def __len__(self) -> int:
        return len(self.names)

    def index(self, label: str) -> int:
        return self.names.index(self.canonical(label))


KOREAN_TO_ENGLISH: dict[str, str] = {
    "기쁨": "happy",
    "불안": "anxious",
    "분노": "angry",
    "슬픔": "sad",
    "당황": "embarrassed",
    "중립": "neutral",
    "상처": "hurt",
}

#: The seven emotions of the AI-Hub corpus (dataset 466), in the paper's order.
KOREAN_EMOTIONS = LabelSet(
    names=("happy", "anxious", "angry", "sad", "embarrassed", "neutral", "hurt"),
    aliases=KOREAN_TO_ENGLISH,
)


def label_order(labels: Iterable[str]) -> list[str]:
    """The class order for a corpus: the Korean seven in canonical order when every
    label is one of them, otherwise the corpus's own labels sorted."""
    present = sorted(set(labels))
    if present and all(label in KOREAN_EMOTIONS.names for label in present):
        return [name for name in KOREAN_EMOTIONS.names if name in present]
    return present


def open_label_set(labels: Iterable[str]) -> LabelSet:
    """A label set made of exactly the labels a corpus brings (generic manifests)."""
    return LabelSet(names=tuple(label_order(labels)))


def fold_label_list(labels: Iterable[str], folding: LabelFolding) -> list[str]:
    """A class order after ``folding``: each name mapped to its kept spelling, the first
    of names that fold together kept in place."""
    out: dict[str, str] = {}
    for name in labels:
        kept = folding.mapping.get(name, name)
        out.setdefault(label_key(kept), kept)
    return list(out.values())
