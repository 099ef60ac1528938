"""The leakage report: what the parts of a split share (speakers, normalised sentences,
audio, any further group column), per pair of parts, beside each part's size and label
counts; and what each split strategy promises to keep apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emofuse.labels import label_order
from emofuse.splits.folds import CV_SCHEMES
from emofuse.splits.groups import audio_keys
from emofuse.splits.parts import PARTS, SplitError, require
from emofuse.text import normalize_texts


@dataclass
class PairLeakage:
    """What two parts share."""

    parts: tuple[str, str]
    shared_speakers: int
    shared_texts: int
    speaker_examples: list[str] = field(default_factory=list)
    text_examples: list[str] = field(default_factory=list)
    shared_audio: int = 0
    audio_examples: list[str] = field(default_factory=list)


@dataclass
class LeakageReport:
    """Part sizes, label counts per part, and what each pair of parts shares.

    ``shared_speakers`` / ``shared_texts`` count distinct speakers / normalised texts
    that appear in more than one part (empty values are never counted). ``checked``
    says which of the two the table allowed checking (a split file without a speaker or
    text column cannot be checked for that). ``shared_groups`` does the same for any
    further columns asked for (``leakage_report(..., groups=("session",))``), with one
    example per pair of parts in ``group_examples``. ``shared_audio`` counts the clips
    whose audio (the same file, or identical content: :func:`~emofuse.splits.groups.audio_keys`)
    is in more than one part; ``first_leak("audio")`` names one.
    """

    part_column: str
    parts: list[str]
    sizes: dict[str, int]
    label_counts: dict[str, dict[str, int]]  # part -> label -> count
    labels: list[str]
    pairs: list[PairLeakage]
    shared_speakers: int
    shared_texts: int
    speakers_per_part: dict[str, int]
    texts_per_part: dict[str, int]
    checked: tuple[str, ...] = ("speaker", "text")
    shared_groups: dict[str, int] = field(default_factory=dict)
    group_examples: dict[str, dict[tuple[str, str], list[str]]] = field(default_factory=dict)
    shared_audio: int = 0

    def first_leak(self, kind: str) -> tuple[str, str, str] | None:
        """(value, part, other part) of one ``kind`` value in two parts, or None when
        ``kind`` (``speaker``, ``text`` or a group column of the report) is clean."""
        if kind in ("speaker", "text", "audio"):
            examples = {"speaker": "speaker_examples", "text": "text_examples"}
            pairs = {
                pair.parts: getattr(pair, examples.get(kind, "audio_examples"))
                for pair in self.pairs
            }
        elif kind in self.group_examples:
            pairs = self.group_examples[kind]
        else:
            raise ValueError(f"this report did not check {kind!r}; checked: {self.checked}")
        for (a, b), values in pairs.items():
            if values:
                return values[0], a, b
        return None

    def is_clean(self, kind: str = "speaker+script") -> bool:
        """No leakage of ``kind``: ``"speaker"``, ``"script"`` (or ``"text"``), or
        ``"speaker+script"`` (or ``"all"``, both)."""
        wanted = {
            "speaker": ("speaker",),
            "script": ("text",),
            "text": ("text",),
            "speaker+script": ("speaker", "text"),
            "all": ("speaker", "text"),
        }.get(kind)
        if wanted is None:
            raise ValueError(
                f"kind must be speaker, script, text, speaker+script or all, not {kind!r}"
            )
        unchecked = [k for k in wanted if k not in self.checked]
        if unchecked:
            raise ValueError(
                f"this split has no {unchecked[0]} column; cannot check {kind} leakage"
            )
        shared = {"speaker": self.shared_speakers, "text": self.shared_texts}
        return all(shared[k] == 0 for k in wanted)

    def to_dict(self) -> dict:
        return {
            "part_column": self.part_column,
            "parts": list(self.parts),
            "sizes": dict(self.sizes),
            "labels": list(self.labels),
            "label_counts": {p: dict(c) for p, c in self.label_counts.items()},
            "speakers_per_part": dict(self.speakers_per_part),
            "texts_per_part": dict(self.texts_per_part),
            "shared_speakers": self.shared_speakers,
            "shared_texts": self.shared_texts,
            "shared_audio": self.shared_audio,
            "checked": list(self.checked),
            "pairs": [
                {
                    "parts": list(pair.parts),
                    "shared_speakers": pair.shared_speakers,
                    "shared_texts": pair.shared_texts,
                    "speaker_examples": list(pair.speaker_examples),
                    "text_examples": list(pair.text_examples),
                    "shared_audio": pair.shared_audio,
                    "audio_examples": list(pair.audio_examples),
                }
                for pair in self.pairs
            ],
        }

    def to_text(self) -> str:
        total = sum(self.sizes.values()) or 1
        header = ["part", "clips", "share", "speakers", "texts", *self.labels]
        rows = [
            [
                p,
                str(self.sizes[p]),
                f"{self.sizes[p] / total:.1%}",
                str(self.speakers_per_part[p]) if "speaker" in self.checked else "-",
                str(self.texts_per_part[p]) if "text" in self.checked else "-",
                *[str(self.label_counts[p].get(label, 0)) for label in self.labels],
            ]
            for p in self.parts
        ]
        lines = [
            f"split by {self.part_column!r}: {sum(self.sizes.values())} clips",
            *_grid([header, *rows]),
        ]
        lines.append("")
        lines.append("shared between parts (leakage):")
        pair_rows = [["parts", "speakers", "texts", "examples"]]
        for pair in self.pairs:
            examples = [
                *pair.speaker_examples[:3],
                *(repr(_clip(t)) for t in pair.text_examples[:2]),
            ]
            pair_rows.append(
                [
                    "/".join(pair.parts),
                    str(pair.shared_speakers) if "speaker" in self.checked else "-",
                    str(pair.shared_texts) if "text" in self.checked else "-",
                    ", ".join(examples),
                ]
            )
        lines.extend(_grid(pair_rows) if self.pairs else ["  (only one part)"])
        verdicts = []
        for kind, name, count in (
            ("speaker", "speakers", self.shared_speakers),
            ("text", "texts", self.shared_texts),
        ):
            if kind not in self.checked:
                verdicts.append(f"{name}: not checked (no {kind} column)")
            else:
                verdicts.append(f"{name}: " + ("clean" if count == 0 else f"{count} in >1 part"))
        if self.shared_audio:  # the same clip on two sides: leakage whatever the strategy
            verdicts.append(f"audio: {self.shared_audio} clips in >1 part (duplicate audio)")
        lines.append("verdict: " + "; ".join(verdicts))
        return "\n".join(lines)


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _part_order(values: np.ndarray) -> list[str]:
    present = list(pd.unique(values))
    known = [p for p in PARTS if p in present]
    return known + sorted(str(p) for p in present if p not in PARTS)


def promised_apart(strategy: str, *, group: str = "speaker") -> tuple[str, ...]:
    """What a split strategy (or CV scheme over ``group``) keeps out of two parts, as
    kinds :meth:`LeakageReport.first_leak` checks: ``speaker``, ``text`` (normalised
    sentences) or a column name. ``corpus`` and ``stratified`` promise nothing."""
    if strategy in CV_SCHEMES:
        return (group,)
    return {
        "speaker": ("speaker",),
        "script": ("text", "script"),
        "speaker+script": ("speaker", "text", "script"),
    }.get(strategy, ())


def leakage_report(
    table: pd.DataFrame,
    part_column: str = "part",
    *,
    examples: int = 3,
    groups: tuple[str, ...] = (),
) -> LeakageReport:
    """Check a split: per pair of parts, the speakers and normalised texts they share
    (and the values of each ``groups`` column, e.g. a CV group)."""
    if part_column not in table.columns:
        raise SplitError(
            f"no {part_column!r} column to report on; columns are {list(table.columns)}"
        )
    part = table[part_column].fillna("").astype(str).to_numpy()
    parts = [p for p in _part_order(part) if p != ""]
    checked = tuple(k for k in ("speaker", "text") if k in table.columns)
    speakers = (
        table["speaker"].fillna("").astype(str).str.strip().to_numpy()
        if "speaker" in table.columns
        else np.full(len(table), "", dtype=object)
    )
    texts = (
        normalize_texts(table["text"]).to_numpy()
        if "text" in table.columns
        else np.full(len(table), "", dtype=object)
    )
    label_values = (
        table["label"].fillna("").astype(str).to_numpy()
        if "label" in table.columns
        else np.full(len(table), "", dtype=object)
    )
    labels = [lab for lab in label_order(label_values) if lab != ""]

    speaker_sets = {p: set(speakers[part == p]) - {""} for p in parts}
    text_sets = {p: set(texts[part == p]) - {""} for p in parts}
    audio = audio_keys(table).to_numpy()
    audio_sets = {p: set(audio[part == p]) - {""} for p in parts}
    pairs = []
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            both_speakers = sorted(speaker_sets[a] & speaker_sets[b])
            both_texts = sorted(text_sets[a] & text_sets[b])
            both_audio = sorted(audio_sets[a] & audio_sets[b])
            pairs.append(
                PairLeakage(
                    parts=(a, b),
                    shared_speakers=len(both_speakers),
                    shared_texts=len(both_texts),
                    speaker_examples=both_speakers[:examples],
                    text_examples=both_texts[:examples],
                    shared_audio=len(both_audio),
                    audio_examples=both_audio[:examples],
                )
            )
    shared_groups: dict[str, int] = {}
    group_examples: dict[str, dict[tuple[str, str], list[str]]] = {}
    for column in groups:
        require(table, [column], "leakage_report groups")
        values = table[column].fillna("").astype(str).str.strip().to_numpy()
        sets = {p: set(values[part == p]) - {""} for p in parts}
        shared_groups[column] = _in_several(sets)
        group_examples[column] = {
            (a, b): sorted(sets[a] & sets[b])[:examples]
            for i, a in enumerate(parts)
            for b in parts[i + 1 :]
        }
    counts = pd.Series(label_values).groupby(part).value_counts()
    label_counts = {p: {lab: int(counts.get((p, lab), 0)) for lab in labels} for p in parts}
    return LeakageReport(
        part_column=part_column,
        parts=parts,
        sizes={p: int((part == p).sum()) for p in parts},
        label_counts=label_counts,
        labels=labels,
        pairs=pairs,
        shared_speakers=_in_several(speaker_sets),
        shared_texts=_in_several(text_sets),
        speakers_per_part={p: len(s) for p, s in speaker_sets.items()},
        texts_per_part={p: len(s) for p, s in text_sets.items()},
        checked=checked,
        shared_groups=shared_groups,
        group_examples=group_examples,
        shared_audio=_in_several(audio_sets),
    )


def _in_several(sets: dict[str, set[str]]) -> int:
    seen: dict[str, int] = {}
    for values in sets.values():
        for value in values:
            seen[value] = seen.get(value, 0) + 1
    return sum(1 for n in seen.values() if n > 1)
