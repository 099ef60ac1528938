"""Train / val / test splits that keep people and sentences from leaking across parts,
the report that checks a split for leakage, and cross-validation folds.

The Korean corpus has many speakers reading the same scripts, so a random split puts
one person's voice, or one sentence, on both sides and flatters the model. Strategies:

- ``corpus``: the corpus's own ``source_split`` (train stays train, with a val part
  carved out of it stratified by label; validation and test become test).
- ``stratified``: random, stratified by label (leaks people and sentences; a baseline).
- ``speaker``: no person in two parts.
- ``script``: no sentence in two parts. Rows are grouped by the ``script`` column AND by
  normalised text, merged as connected components, so two ids for one sentence, or one
  id for two sentences, both stay on one side.
- ``speaker+script``: both at once (see :func:`assign_split`).

Grouped strategies balance labels across parts as well as whole groups allow
(:func:`_assign_groups`). ``test_size`` and ``val_size`` are fractions of the whole
table; ``train`` gets the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from emofuse.corpus.table import require_columns
from emofuse.labels import label_order
from emofuse.text import normalize_texts

SPLIT_STRATEGIES = ("corpus", "stratified", "speaker", "script", "speaker+script")
PARTS = ("train", "val", "test")
CV_SCHEMES = ("kfold", "logo")

#: Grouped assignment refines its first guess by moving single groups between parts;
#: past this many groups the first guess is already balanced and the loop would be slow.
_LOCAL_SEARCH_MAX_GROUPS = 20_000
_LOCAL_SEARCH_PASSES = 6


class SplitError(ValueError):
    """A split that cannot be made from this table, with the reason and a way out."""


# --------------------------------------------------------------------------- assign_split


def assign_split(
    table: pd.DataFrame,
    strategy: str,
    *,
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a copy of ``table`` with a ``part`` column (``train`` / ``val`` / ``test``).

    The index is kept as given. ``val_size=0`` makes no val part. The result's
    ``attrs["split_notes"]`` lists what the split decided (e.g. rows dropped).

    ``speaker+script``: first the rows are grouped into connected components of the
    speaker-script-text graph; if those components can be dealt out with every part
    getting at least half its target, nothing is dropped (corpora where speakers read
    their own scripts). Otherwise (many speakers reading the same scripts, as in the
    Korean corpus and EmoDB) speakers and scripts are assigned to parts independently,
    each with fractions proportional to sqrt(target fraction), and only clips whose
    speaker and script fall in the same part are kept; the others are dropped and
    counted in ``attrs["dropped_rows"]``. With the sqrt fractions the kept parts have
    the requested proportions, and this keeps the most data any such crossing can:
    with train/val/test = 0.7/0.1/0.2 about 39% of a fully crossed corpus survives.
    """
    if strategy not in SPLIT_STRATEGIES:
        raise SplitError(
            f"unknown split strategy {strategy!r}; choose one of {', '.join(SPLIT_STRATEGIES)}"
        )
    fractions = _fractions(test_size, val_size)
    _require(table, ["label"], f"{strategy} split")
    if len(table) == 0:
        raise SplitError("cannot split an empty table")
    rng = np.random.default_rng(seed)
    labels = _codes(table["label"])
    notes: list[str] = []
    keep = np.ones(len(table), dtype=bool)

    if strategy == "corpus":
        part = _corpus_parts(table, labels, val_size, rng)
    elif strategy == "stratified":
        part = _stratified_parts(labels, fractions, rng)
    elif strategy == "speaker":
        part = _assign_groups(_speaker_codes(table, "speaker"), labels, fractions, rng, "speakers")
    elif strategy == "script":
        part = _assign_groups(_script_components(table), labels, fractions, rng, "scripts")
    else:
        part, keep, note = _speaker_script_parts(table, labels, fractions, rng)
        notes.append(note)

    out = table.loc[keep].copy()
    out["part"] = part[keep]
    dropped = int((~keep).sum())
    out.attrs["dropped_rows"] = dropped
    out.attrs["split_notes"] = notes
    for name in _needed_parts(fractions):
        if not (out["part"] == name).any():
            raise SplitError(f"{strategy} split left the {name} part empty; {_hint(strategy)}")
    notes.extend(_size_notes(out["part"], fractions, strategy))
    return out


#: Units a grouped strategy deals out whole: why a part can miss its requested size.
_GROUP_UNITS = {
    "speaker": "speaker",
    "script": "sentence",
    "speaker+script": "speaker and sentence",
    "corpus": "the corpus's own split",
}


def _size_notes(part: pd.Series, fractions: dict[str, float], strategy: str) -> list[str]:
    """Say so when a part came out far from the size asked for (whole groups move
    together, so a tiny request on a grouped strategy can give a large part)."""
    notes = []
    total = len(part)
    for name in _needed_parts(fractions):
        asked = fractions[name]
        count = int((part == name).sum())
        got = count / total if total else 0.0
        if abs(got - asked) <= max(0.05, 0.5 * asked):
            continue
        why = (
            f"the {strategy} strategy keeps every {_GROUP_UNITS[strategy]}'s clips in one part "
            "and no part may be empty"
            if strategy in _GROUP_UNITS
            else "every label needs clips in every part"
        )
        notes.append(
            f"asked for {asked:.0%} {name}, got {got:.1%} ({count} of {total} clips): {why}"
        )
    return notes


def _fractions(test_size: float, val_size: float) -> dict[str, float]:
    if not 0 < test_size < 1:
        raise SplitError(f"test_size must be between 0 and 1, not {test_size}")
    if not 0 <= val_size < 1:
        raise SplitError(f"val_size must be between 0 and 1 (0 = no val part), not {val_size}")
    if test_size + val_size >= 1:
        raise SplitError(
            f"test_size + val_size = {test_size + val_size:g} leaves nothing to train on"
        )
    return {"train": 1 - test_size - val_size, "val": val_size, "test": test_size}


def _needed_parts(fractions: dict[str, float]) -> list[str]:
    return [p for p in PARTS if fractions.get(p, 0) > 0]


def _hint(strategy: str) -> str:
    return {
        "speaker": "too few speakers for these sizes; use fewer parts (--val-size 0) or stratified",
        "script": "too few distinct sentences for these sizes; use --val-size 0 or speaker",
        "speaker+script": (
            "speakers and scripts overlap too little to keep clips in every part; "
            "use --val-size 0, or the speaker or script strategy"
        ),
    }.get(strategy, "use a larger table or smaller parts")


def _codes(values: pd.Series) -> np.ndarray:
    return pd.factorize(values.astype(str).to_numpy())[0]


def _speaker_codes(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise SplitError(f"the table has no {column!r} column; use stratified or script")
    values = table[column].fillna("").astype(str).str.strip()
    empty = int((values == "").sum())
    if empty == len(values):
        raise SplitError(f"no {column} column values; use stratified or script")
    if empty:
        raise SplitError(
            f"{empty} of {len(values)} rows have no {column}, so they cannot be kept apart "
            "by person; fill them in, drop them, or use stratified or script"
        )
    return pd.factorize(values.to_numpy())[0]


def _corpus_parts(
    table: pd.DataFrame, labels: np.ndarray, val_size: float, rng: np.random.Generator
) -> np.ndarray:
    if "source_split" not in table.columns:
        raise SplitError("the table has no source_split column; use another strategy")
    source = table["source_split"].fillna("").astype(str).str.strip().to_numpy()
    if (source == "").all():
        raise SplitError(
            "this corpus has no source_split (its own train/validation split); "
            "use stratified, speaker, script or speaker+script"
        )
    unknown = sorted(set(source) - {"train", "validation", "test"})
    if unknown:
        count = int(np.isin(source, unknown).sum())
        raise SplitError(
            f"{count} rows have source_split {unknown}; expected train, validation or test"
        )
    is_train = source == "train"
    if not is_train.any():
        raise SplitError("the corpus's own split has no train rows; use another strategy")
    if is_train.all():
        raise SplitError(
            "the corpus's own split is all train (no validation/test rows); use another strategy"
        )
    part = np.where(is_train, "train", "test").astype(object)
    if val_size > 0:
        share = val_size * len(table) / is_train.sum()
        if share >= 1:
            raise SplitError(
                f"val_size={val_size} asks for more rows than the corpus's train part has"
            )
        train_rows = np.flatnonzero(is_train)
        carved = _stratified_parts(labels[train_rows], {"val": share}, rng)
        part[train_rows] = carved
    return part


def _stratified_parts(
    labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator
) -> np.ndarray:
    """Within each label, a seeded shuffle; the first round(n*test) rows go to test, the
    next round(n*val) to val, the rest to train."""
    part = np.full(len(labels), "train", dtype=object)
    for code in np.unique(labels):
        rows = np.flatnonzero(labels == code)
        rows = rows[rng.permutation(len(rows))]
        start = 0
        for name in ("test", "val"):
            n = int(round(len(rows) * fractions.get(name, 0.0)))
            part[rows[start : start + n]] = name
            start += n
    return part


def _script_components(table: pd.DataFrame) -> np.ndarray:
    """Group ids such that rows sharing a script id or a normalised text share a group."""
    keys = []
    if "script" in table.columns:
        keys.append(table["script"].fillna("").astype(str).str.strip())
    if "text" in table.columns:
        keys.append(normalize_texts(table["text"]))
    if not keys:
        raise SplitError("the table has neither a script nor a text column to group by")
    return _components(keys)


def _components(keys: list[pd.Series]) -> np.ndarray:
    """Connected components of rows linked by equal non-empty values in any key column
    (a union-find over the bipartite row-value graph, done by scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(keys[0])
    rows, cols = [], []
    offset = n  # value nodes come after the row nodes
    for key in keys:
        values = key.to_numpy()
        codes = pd.factorize(values)[0]
        present = (values != "") & (codes >= 0)
        rows.append(np.flatnonzero(present))
        cols.append(codes[present] + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    return pd.factorize(component[:n])[0]


def _assign_groups(
    groups: np.ndarray,
    labels: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
    what: str,
) -> np.ndarray:
    """Deal whole groups out to parts so each part's label counts approach its share.

    First guess: groups in seeded random order, stratified by each group's main label,
    each placed by where the midpoint of its rows falls on the cumulative fractions
    (test, then val, then train). Then (up to 20k groups) a local search moves single
    groups to another part while that lowers sum over parts and labels of
    ((count - target) / label total)^2, never emptying a part. Random start, so
    different seeds give different, equally balanced splits.
    """
    names = _needed_parts(fractions)
    n_groups = int(groups.max()) + 1
    if n_groups < len(names):
        raise SplitError(
            f"only {n_groups} {what} for {len(names)} parts ({', '.join(names)}); "
            "use fewer parts (val size 0) or another strategy"
        )
    n_labels = int(labels.max()) + 1
    counts = np.zeros((n_groups, n_labels))
    np.add.at(counts, (groups, labels), 1)
    sizes = counts.sum(axis=1)
    frac = np.array([fractions[p] for p in names])
    targets = frac[:, None] * counts.sum(axis=0)[None, :]

    # First guess: cumulative fractions, in the order test, val, train.
    placement_order = [names.index(p) for p in ("test", "val", "train") if p in names]
    bounds = np.cumsum(frac[placement_order])
    order = rng.permutation(n_groups)
    main_label = np.argmax(counts + rng.random(counts.shape) * 1e-3, axis=1)
    assign = np.empty(n_groups, dtype=int)
    for stratum in np.unique(main_label):
        members = order[main_label[order] == stratum]
        cum = np.cumsum(sizes[members])
        midpoint = (cum - sizes[members] / 2) / cum[-1]
        slot = np.minimum(np.searchsorted(bounds, midpoint, side="right"), len(bounds) - 1)
        assign[members] = np.array(placement_order)[slot]

    current = np.zeros_like(targets)
    np.add.at(current, assign, counts)
    members_per_part = np.bincount(assign, minlength=len(names))

    # Every part needs at least one group: move the smallest groups of the fullest part.
    for p in np.flatnonzero(members_per_part == 0):
        donor = int(np.argmax(members_per_part))
        candidates = np.flatnonzero(assign == donor)
        g = candidates[np.argmin(sizes[candidates])]
        assign[g] = p
        current[donor] -= counts[g]
        current[p] += counts[g]
        members_per_part[donor] -= 1
        members_per_part[p] += 1

    if n_groups <= _LOCAL_SEARCH_MAX_GROUPS:
        weight = 1.0 / np.maximum(counts.sum(axis=0), 1.0) ** 2
        for _ in range(_LOCAL_SEARCH_PASSES):
            moved = False
            for g in rng.permutation(n_groups):
                p = assign[g]
                if members_per_part[p] == 1:
                    continue
                v = counts[g]
                dev = current - targets
                delta = ((2 * v * (dev - dev[p]) + 2 * v * v) * weight).sum(axis=1)
                delta[p] = 0.0
                q = int(np.argmin(delta))
                if delta[q] < -1e-12:
                    assign[g] = q
                    current[p] -= v
                    current[q] += v
                    members_per_part[p] -= 1
                    members_per_part[q] += 1
                    moved = True
            if not moved:
                break
    return np.array(names, dtype=object)[assign[groups]]


def _speaker_script_parts(
    table: pd.DataFrame,
    labels: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, str]:
    speakers = _speaker_codes(table, "speaker")
    scripts = _script_components(table)
    names = _needed_parts(fractions)

    components = _components(
        [table["speaker"].astype(str).str.strip(), pd.Series(scripts.astype(str))]
    )
    if components.max() + 1 >= len(names):
        part = _assign_groups(components, labels, fractions, rng, "speaker-script components")
        achieved = {p: (part == p).mean() for p in names}
        if all(achieved[p] >= fractions[p] / 2 for p in names):
            keep = np.ones(len(table), dtype=bool)
            return (
                part,
                keep,
                (
                    f"speaker+script: {components.max() + 1} disjoint speaker/script groups; "
                    "no rows dropped"
                ),
            )

    root = {p: np.sqrt(fractions[p]) for p in names}
    total = sum(root.values())
    crossed = {p: root[p] / total for p in names}
    by_speaker = _assign_groups(speakers, labels, crossed, rng, "speakers")
    by_script = _assign_groups(scripts, labels, crossed, rng, "scripts")
    keep = by_speaker == by_script
    dropped = int((~keep).sum())
    note = (
        f"speaker+script: speakers and scripts cross, so each was dealt to parts on its own "
        f"and the {dropped} of {len(table)} clips ({dropped / len(table):.0%}) whose speaker "
        "and script landed in different parts were dropped"
    )
    return by_speaker, keep, note


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    require_columns(table, columns, what, SplitError)


# ------------------------------------------------------------------------ leakage report


@dataclass
class PairLeakage:
    """What two parts share."""

    parts: tuple[str, str]
    shared_speakers: int
    shared_texts: int
    speaker_examples: list[str] = field(default_factory=list)
    text_examples: list[str] = field(default_factory=list)


@dataclass
class LeakageReport:
    """Part sizes, label counts per part, and what each pair of parts shares.

    ``shared_speakers`` / ``shared_texts`` count distinct speakers / normalised texts
    that appear in more than one part (empty values are never counted). ``checked``
    says which of the two the table allowed checking (a split file without a speaker or
    text column cannot be checked for that). ``shared_groups`` does the same for any
    further columns asked for (``leakage_report(..., groups=("session",))``), with one
    example per pair of parts in ``group_examples``.
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

    def first_leak(self, kind: str) -> tuple[str, str, str] | None:
        """(value, part, other part) of one ``kind`` value in two parts, or None when
        ``kind`` (``speaker``, ``text`` or a group column of the report) is clean."""
        if kind in ("speaker", "text"):
            pairs = {
                pair.parts: pair.speaker_examples if kind == "speaker" else pair.text_examples
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
            "checked": list(self.checked),
            "pairs": [
                {
                    "parts": list(pair.parts),
                    "shared_speakers": pair.shared_speakers,
                    "shared_texts": pair.shared_texts,
                    "speaker_examples": list(pair.speaker_examples),
                    "text_examples": list(pair.text_examples),
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
    pairs = []
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            both_speakers = sorted(speaker_sets[a] & speaker_sets[b])
            both_texts = sorted(text_sets[a] & text_sets[b])
            pairs.append(
                PairLeakage(
                    parts=(a, b),
                    shared_speakers=len(both_speakers),
                    shared_texts=len(both_texts),
                    speaker_examples=both_speakers[:examples],
                    text_examples=both_texts[:examples],
                )
            )
    shared_groups: dict[str, int] = {}
    group_examples: dict[str, dict[tuple[str, str], list[str]]] = {}
    for column in groups:
        _require(table, [column], "leakage_report groups")
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
    )


def _in_several(sets: dict[str, set[str]]) -> int:
    seen: dict[str, int] = {}
    for values in sets.values():
        for value in values:
            seen[value] = seen.get(value, 0) + 1
    return sum(1 for n in seen.values() if n > 1)


# ------------------------------------------------------------------- cross-validation


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: ``part`` is aligned with the table's index and holds
    ``train`` / ``val`` / ``test``."""

    name: str
    part: pd.Series


def cross_validation_folds(
    table: pd.DataFrame,
    scheme: Literal["kfold", "logo"] = "kfold",
    *,
    k: int = 5,
    group: str = "speaker",
    seed: int = 0,
    val_size: float = 0.1,
) -> list[Fold]:
    """Folds in which no ``group`` value is in two parts.

    ``kfold``: stratified k-fold grouped by ``group`` (sklearn ``StratifiedGroupKFold``);
    every row is test in exactly one fold; folds named ``fold1`` ... ``foldk``.
    ``logo``: leave one group out over any column; a fold per distinct value, named by it.
    In each fold a val part (``val_size`` of the whole table, 0 for none) is carved out
    of train, grouped the same way, so model selection never looks at test.
    ``group="script"`` groups by script-or-text components (as the ``script`` split) for
    ``kfold`` and for the val carve; ``logo`` over ``script`` leaves one script id out.
    """
    if scheme not in CV_SCHEMES:
        raise SplitError(f"scheme must be one of {', '.join(CV_SCHEMES)}, not {scheme!r}")
    if not 0 <= val_size < 1:
        raise SplitError(f"val_size must be between 0 and 1 (0 = no val part), not {val_size}")
    _require(table, ["label", group], f"{scheme} folds")
    if group == "speaker":
        codes = _speaker_codes(table, "speaker")
    elif group == "script":
        codes = _script_components(table)
    else:
        values = table[group].fillna("").astype(str).str.strip()
        if (values == "").any():
            raise SplitError(
                f"{int((values == '').sum())} rows have an empty {group!r}; fill them or group by another column"
            )
        codes = pd.factorize(values.to_numpy())[0]
    labels = _codes(table["label"])
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(seed)

    tests: list[tuple[str, np.ndarray]] = []
    if scheme == "kfold":
        if k < 2:
            raise SplitError(f"k must be at least 2, not {k}")
        if k > n_groups:
            raise SplitError(
                f"k={k} folds but only {n_groups} distinct {group} groups; use k <= {n_groups}"
            )
        import warnings

        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # "the least populated class has fewer members than n_splits" is expected
            # for small classes; grouping already makes folds uneven.
            warnings.simplefilter("ignore", UserWarning)
            for i, (_, test_rows) in enumerate(splitter.split(np.zeros(len(table)), labels, codes)):
                test_mask = np.zeros(len(table), dtype=bool)
                test_mask[test_rows] = True
                tests.append((f"fold{i + 1}", test_mask))
    else:
        if n_groups < 2:
            raise SplitError(f"leave-one-group-out needs at least 2 distinct {group} values")
        values = table[group].fillna("").astype(str).str.strip().to_numpy()
        for value in pd.unique(values):
            tests.append((str(value), values == value))

    folds = []
    for name, test_mask in tests:
        if not test_mask.any():
            raise SplitError(f"fold {name} has no test rows; use fewer folds")
        part = np.where(test_mask, "test", "train").astype(object)
        if val_size > 0:
            train_rows = np.flatnonzero(~test_mask)
            share = val_size * len(table) / len(train_rows)
            if share >= 1:
                raise SplitError(f"fold {name}: val_size={val_size} leaves no train rows")
            sub_codes = pd.factorize(codes[train_rows])[0]
            sub_labels = pd.factorize(labels[train_rows])[0]
            try:
                part[train_rows] = _assign_groups(
                    sub_codes,
                    sub_labels,
                    {"train": 1 - share, "val": share},
                    rng,
                    f"{group} groups",
                )
            except SplitError as err:
                raise SplitError(f"fold {name}: cannot carve a val part: {err}") from None
        folds.append(Fold(name=name, part=pd.Series(part, index=table.index, name="part")))
    return folds
