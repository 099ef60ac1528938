"""A pool with its answers joined in: the labelled corpus `prepare POOL --answers FILE`
writes, closing the loop suggest -> label -> prepare -> train.

Each clip's label is the one its annotators agree on (:func:`~emofuse.corpus.answers.
resolve_answers`: each annotator's latest standing answer counts once, retractions are
ignored, the majority wins); a clip without answers keeps the pool's own label when it
has one. Clips left without a label are left out and counted; clips whose annotators
split evenly are left out and listed as ``tied-answers`` problems; answers for ids the
pool does not have, and lines of the answers file that cannot be read (a write cut by a
kill), are reported, never fatal.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from emofuse.corpus.answers import read_answers, resolve_answers
from emofuse.corpus.fields import korean_label, nfc
from emofuse.corpus.files import Problem
from emofuse.corpus.pool import Pool
from emofuse.corpus.rows import Row, build_result
from emofuse.corpus.scan import CorpusError
from emofuse.corpus.table import COLUMNS, ScanResult
from emofuse.labels import label_key

#: Problem kinds about the answers file rather than about a clip: no row is dropped.
ANSWER_FILE_KINDS = ("unknown-answer-id", "unreadable-answer")


def join_answers(pool: Pool, answers_path: str | Path) -> ScanResult:
    """``pool``'s clips labelled by the answers at ``answers_path`` (an answers.csv the
    labelling page appends to); the pool's own problems are kept."""
    answers_path = Path(answers_path).expanduser()
    if not answers_path.is_file():
        raise CorpusError(f"{answers_path}: no such answers file")
    try:
        log = read_answers(answers_path)
        resolved = resolve_answers(log.answers)  # the same snapshot as the counts
    except (ValueError, csv.Error) as err:
        message = str(err)
        if not message.startswith(str(answers_path)):
            message = f"{answers_path}: not a readable answers file ({message})"
        raise CorpusError(message) from err

    problems: list[Problem] = list(pool.problems.itertuples(index=False, name=None))
    problems += [
        (f"{answers_path}:{line}", f"unreadable-answer: {why} (line skipped)")
        for line, why in log.skipped
    ]
    table = pool.table
    in_pool = set(table["id"])
    answer_counts = Counter(answer.id for answer in log.answers)
    problems += [
        (
            str(answers_path),
            f"unknown-answer-id: {ident[:80]!r} ({answer_counts[ident]} answers) is not a "
            f"clip of the pool {pool.source}",
        )
        for ident in sorted(set(answer_counts) - in_pool)
    ]

    ties = set(resolved.ties)
    rows: list[Row] = []
    tied = from_answers = from_pool = replaced = unlabelled = 0
    for row in table[list(COLUMNS)].itertuples(index=False, name=None):
        ident, audio, own_label = row[0], row[1], row[3]
        if ident in resolved.labels:
            label = resolved.labels[ident]
            from_answers += 1
            replaced += bool(own_label) and _class(label) != _class(own_label)
        elif ident in ties:
            split = resolved.by_annotator[ident]
            votes = ", ".join(f"{who}: {lab}" for who, lab in sorted(split.items()))
            problems.append(
                (audio or f"{pool.source} id {ident}", f"tied-answers: {ident!r}: {votes}")
            )
            tied += 1
            continue
        elif own_label:
            label = own_label
            from_pool += 1
        else:
            unlabelled += 1
            continue
        rows.append((*row[:3], label, *row[4:]))  # type: ignore[arg-type]

    korean = all(korean_label(row[3]) for row in rows)
    rows = [(*r[:3], korean_label(r[3]) if korean else nfc(r[3]), *r[4:]) for r in rows]  # type: ignore[misc]
    notes = [
        *pool.notes,
        *_answer_notes(answers_path, resolved.by_annotator, in_pool, from_answers),
    ]
    if from_pool:
        notes.append(f"the pool's own label kept for {_count(from_pool, 'clip')} without answers")
    if replaced:
        notes.append(f"answers replace the pool's own label on {_count(replaced, 'clip')}")
    if tied:
        notes.append(f"left out, annotators split evenly (tied-answers): {_count(tied, 'clip')}")
    if unlabelled:
        notes.append(f"left out, no label yet: {unlabelled} of the pool's {len(table)} clips")
    return build_result(rows, problems, notes=notes, sort=False)


def _class(label: str) -> str:
    """One form per class: the Korean seven by canonical name, else by label key."""
    return korean_label(label) or label_key(label)


def _answer_notes(
    path: Path, by_annotator: dict[str, dict[str, str]], in_pool: set[str], labelled: int
) -> list[str]:
    """How many clips the answers cover, by how many people, and how often they agree."""
    standing = {ident: votes for ident, votes in by_annotator.items() if ident in in_pool}
    annotators = {who for votes in standing.values() for who in votes}
    shared = [votes for votes in standing.values() if len(votes) > 1]
    line = (
        f"answers {path}: {_count(len(standing), 'clip')} answered by "
        f"{_count(len(annotators), 'annotator')}, {labelled} labelled from them"
    )
    if shared:
        agreed = sum(1 for votes in shared if len(set(votes.values())) == 1)
        line += f"; {len(shared)} answered by more than one annotator, who agree on {agreed}"
    return [line]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
