"""A scan's rows and what it makes of them: the row tuple, ids that are unique across the
corpus (the file stem where it is, else a short path that tells the files apart), and the
:class:`ScanResult` of rows and problems.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath

import pandas as pd

from emofuse.corpus.fields import text_script_id, trailing_number
from emofuse.corpus.files import Problem
from emofuse.corpus.table import COLUMNS, PROBLEM_COLUMNS, ScanResult, empty_table

#: One table row, values in :data:`~emofuse.corpus.table.COLUMNS` order.
Row = tuple[str, str, str, str, str, str, float, str]


def unique_ids(candidates: Sequence[Sequence[str]], *, reserved: Iterable[str] = ()) -> list[str]:
    """Pick, per row, the first candidate id that no other row wants at that level.

    ``candidates[i]`` lists row i's ids from preferred (the file stem) to most specific
    (e.g. a relative path); ``~2``, ``~3`` … is appended if even the last one collides.
    Names in ``reserved`` are never chosen.
    """
    n = len(candidates)
    chosen: list[str | None] = [None] * n
    pending = list(range(n))
    level = 0
    taken: set[str] = set(reserved)
    while pending:
        wanted: dict[str, list[int]] = {}
        for i in pending:
            options = candidates[i]
            wanted.setdefault(options[min(level, len(options) - 1)], []).append(i)
        last = all(level >= len(candidates[i]) - 1 for i in pending)
        still: list[int] = []
        for name, rows in wanted.items():
            if len(rows) == 1 and name not in taken:
                chosen[rows[0]] = name
                taken.add(name)
            elif last:
                for k, i in enumerate(rows):
                    new = name if k == 0 and name not in taken else f"{name}~{k + 1}"
                    while new in taken:
                        new += "~"
                    chosen[i] = new
                    taken.add(new)
            else:
                still.extend(rows)
        pending = still
        level += 1
    return [c or "" for c in chosen]


def path_id_candidates(audio: str, base: str | PurePath) -> tuple[str, ...]:
    """The ids a clip at ``audio`` (absolute) may take, preferred first, for
    :func:`unique_ids`: its file stem; then, for a file below ``base`` (a manifest's
    folder), its path relative to ``base``; for one elsewhere, ever longer path suffixes
    (``wav/03a01Fa``, ``emodb/wav/03a01Fa``, …), so a collision gives the shortest suffix
    that tells the files apart, never a ``../../..`` chain. File extensions are dropped."""
    path = PurePath(audio)
    stem = path.stem
    try:
        relative = path.relative_to(base)
    except ValueError:
        folders = path.parent.parts[1:] if path.anchor else path.parent.parts
        parts = [*folders, stem]
        return tuple("/".join(parts[-k:]) for k in range(1, len(parts) + 1))
    return (stem, relative.with_name(stem).as_posix())


def stem_ids(
    stems: Sequence[str],
    fallbacks: Callable[[int], Sequence[str]],
    *,
    reserved: Iterable[str] = (),
) -> list[str]:
    """Ids that are the file stem where it is unique, else the first of
    ``fallbacks(i)`` that is (computed only for the colliding rows)."""
    reserved = set(reserved)
    counts = Counter(stems)
    ids = list(stems)
    clash = [i for i, stem in enumerate(stems) if counts[stem] > 1 or stem in reserved]
    if clash:
        taken = reserved | {stem for stem in stems if counts[stem] == 1}
        fixed = unique_ids([(stems[i], *fallbacks(i)) for i in clash], reserved=taken)
        for i, ident in zip(clash, fixed, strict=True):
            ids[i] = ident
    return ids


def with_stem_ids(rows: Sequence[Row], fallbacks: Callable[[int], Sequence[str]]) -> list[Row]:
    """``rows`` (whose id is the file stem) with the ids :func:`stem_ids` makes unique."""
    ids = stem_ids([row[0] for row in rows], fallbacks)
    return [(ident, *row[1:]) for ident, row in zip(ids, rows, strict=True)]


def build_result(
    rows: Sequence[Row],
    problems: Sequence[Problem],
    *,
    labels: list[str] | None = None,
    notes: list[str] | None = None,
    sort: bool = True,
) -> ScanResult:
    """Rows and problems -> a :class:`ScanResult` (rows sorted by audio path unless
    ``sort`` is False, e.g. to keep a manifest's own order). Labels that differ only in
    case, spacing or Unicode form are folded into one (:func:`emofuse.labels.fold_labels`)
    and a note says so."""
    from emofuse.labels import fold_labels, label_order

    folding = fold_labels(row[3] for row in rows)
    if folding.merges:
        rows = [(*row[:3], folding.mapping[row[3]], *row[4:]) for row in rows]  # type: ignore[misc]
        notes = [*(notes or []), *folding.notes()]
        labels = None  # the order of the folded labels
    if rows:
        table = pd.DataFrame(list(rows), columns=list(COLUMNS))
        table["duration_s"] = table["duration_s"].astype("float64")
        if sort:
            table = table.sort_values("audio", kind="stable").reset_index(drop=True)
    else:
        table = empty_table()
    problem_table = pd.DataFrame(list(problems), columns=list(PROBLEM_COLUMNS))
    if len(problem_table):
        problem_table = problem_table.sort_values(["file", "reason"], kind="stable")
        problem_table = problem_table.reset_index(drop=True)
    if labels is None:
        labels = label_order(table["label"])
    return ScanResult(table=table, problems=problem_table, labels=labels, notes=notes or [])


def paired_row(
    stem: str, wav: str, text: object, label: str, speaker: str, duration: float, split: str
) -> Row:
    """The row of a WAV + label-file pair whose checks passed: the id is the file stem (made
    unique later by :func:`with_stem_ids`), the script its trailing number or, failing
    that, the sentence's own id."""
    text = str(text).strip()
    script = trailing_number(stem) or text_script_id(text)
    return (stem, wav, text, label, speaker, script, duration, split)
