"""Train / val / test splits that keep people and sentences from leaking across parts.
(The report that checks a split is :mod:`emofuse.splits.leakage`; cross-validation
folds are :mod:`emofuse.splits.folds`.)

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
(:func:`~emofuse.splits.groups.assign_groups`). ``test_size`` and ``val_size`` are fractions of the whole
table; ``train`` gets the rest.

Every strategy keeps rows with the same audio (duplicates, :func:`~emofuse.splits.groups.audio_keys`)
in one part: grouped strategies merge their groups through them; ``stratified`` moves a
duplicate to the part of the group's first row; ``corpus`` keeps the corpus's own held-out
part as published and drops the train copies of audio it holds. ``split_notes`` says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emofuse.splits.groups import (
    assign_groups,
    connected_groups,
    duplicate_audio_groups,
    script_components,
    speaker_codes,
    with_duplicate_audio,
)
from emofuse.splits.parts import SplitError, label_codes, needed_parts, require

SPLIT_STRATEGIES = ("corpus", "stratified", "speaker", "script", "speaker+script")


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
    require(table, ["label"], f"{strategy} split")
    if len(table) == 0:
        raise SplitError("cannot split an empty table")
    rng = np.random.default_rng(seed)
    labels = label_codes(table["label"])
    notes: list[str] = []
    keep = np.ones(len(table), dtype=bool)

    if strategy == "corpus":
        part = _corpus_parts(table, labels, val_size, rng)
    elif strategy == "stratified":
        part = _stratified_parts(labels, fractions, rng)
    elif strategy == "speaker":
        speakers = with_duplicate_audio(speaker_codes(table, "speaker"), table)
        part = assign_groups(speakers, labels, fractions, rng, "speakers")
    elif strategy == "script":
        scripts = with_duplicate_audio(script_components(table), table)
        part = assign_groups(scripts, labels, fractions, rng, "scripts")
    else:
        part, keep, note = _speaker_script_parts(table, labels, fractions, rng)
        notes.append(note)
    notes += _keep_duplicates_together(table, part, keep, held_out=strategy == "corpus")

    out = table.loc[keep].copy()
    out["part"] = part[keep]
    dropped = int((~keep).sum())
    out.attrs["dropped_rows"] = dropped
    out.attrs["split_notes"] = notes
    for name in needed_parts(fractions):
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


def _keep_duplicates_together(
    table: pd.DataFrame, part: np.ndarray, keep: np.ndarray, *, held_out: bool
) -> list[str]:
    """Put rows with the same audio in one part (in place): the part of the group's first
    kept row, or with ``held_out`` (the corpus's own split, whose test part stays as
    published) drop the other parts' copies of audio that the test part holds."""
    groups = duplicate_audio_groups(table)
    if groups is None:
        return []
    rows = np.flatnonzero((groups >= 0) & keep)
    frame = pd.DataFrame({"group": groups[rows], "part": part[rows], "row": rows})
    spread = frame.groupby("group")["part"].nunique()
    moved = dropped = 0
    for _, members in frame[frame["group"].isin(spread.index[spread > 1])].groupby("group"):
        at = members["row"].to_numpy()
        parts = part[at]
        if held_out and (parts == "test").any():
            keep[at[parts != "test"]] = False
            dropped += int((parts != "test").sum())
        else:
            moved += int((parts != parts[0]).sum())
            part[at] = parts[0]
    notes = []
    if moved:
        notes.append(
            f"{moved} clips moved to the part of another clip with the same audio "
            "(duplicate audio: one clip, one part)"
        )
    if dropped:
        notes.append(
            f"{dropped} clips dropped: their audio is also in the corpus's own held-out "
            "(test) part, which is kept as published"
        )
    return notes


def _size_notes(part: pd.Series, fractions: dict[str, float], strategy: str) -> list[str]:
    """Say so when a part came out far from the size asked for (whole groups move
    together, so a tiny request on a grouped strategy can give a large part)."""
    notes = []
    total = len(part)
    for name in needed_parts(fractions):
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


def _hint(strategy: str) -> str:
    return {
        "speaker": "too few speakers for these sizes; use fewer parts (--val-size 0) or stratified",
        "script": "too few distinct sentences for these sizes; use --val-size 0 or speaker",
        "speaker+script": (
            "speakers and scripts overlap too little to keep clips in every part; "
            "use --val-size 0, or the speaker or script strategy"
        ),
    }.get(strategy, "use a larger table or smaller parts")


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


def _speaker_script_parts(
    table: pd.DataFrame,
    labels: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, str]:
    speakers = with_duplicate_audio(speaker_codes(table, "speaker"), table)
    scripts = with_duplicate_audio(script_components(table), table)
    names = needed_parts(fractions)

    components = connected_groups(
        [table["speaker"].astype(str).str.strip(), pd.Series(scripts.astype(str))]
    )
    if components.max() + 1 >= len(names):
        part = assign_groups(components, labels, fractions, rng, "speaker-script components")
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
    by_speaker = assign_groups(speakers, labels, crossed, rng, "speakers")
    by_script = assign_groups(scripts, labels, crossed, rng, "scripts")
    keep = by_speaker == by_script
    dropped = int((~keep).sum())
    note = (
        f"speaker+script: speakers and scripts cross, so each was dealt to parts on its own "
        f"and the {dropped} of {len(table)} clips ({dropped / len(table):.0%}) whose speaker "
        "and script landed in different parts were dropped"
    )
    return by_speaker, keep, note
