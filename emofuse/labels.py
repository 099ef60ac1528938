"""Label sets: the corpus's own classes, with canonical names and aliases.

The AI-Hub Korean corpus (dataset 466) has seven emotions; any other corpus brings its
own set, and nothing downstream assumes seven classes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def _key(label: str) -> str:
    """Matching form: composed Hangul (names from macOS arrive decomposed), case and
    surrounding white space ignored."""
    return unicodedata.normalize("NFC", label).strip().casefold()


class UnknownLabelError(ValueError):
    """A label that the label set neither names nor aliases."""


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of canonical class names plus aliases that map onto them.

    Matching is case-insensitive, ignores surrounding white space and Unicode form.
    """

    names: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate label names in {self.names}")
        for alias, target in self.aliases.items():
            if target not in self.names:
                raise ValueError(f"alias {alias!r} points at unknown label {target!r}")

    def _lookup(self) -> dict[str, str]:
        table = {_key(name): name for name in self.names}
        table.update({_key(a): t for a, t in self.aliases.items()})
        return table

    def canonical(self, label: str) -> str:
        """Return the canonical name for ``label`` or raise :class:`UnknownLabelError`."""
        found = self._lookup().get(_key(str(label)))
        if found is None:
            raise UnknownLabelError(
                f"unknown label {label!r}; expected one of {', '.join(self.names)}"
                + (f" (or aliases {', '.join(sorted(self.aliases))})" if self.aliases else "")
            )
        return found

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and _key(label) in self._lookup()

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
