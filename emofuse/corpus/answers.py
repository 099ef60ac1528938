"""answers.csv: the labels people give a pool's clips, one appended line per answer.

The file is the only record of the labelling work, so every answer is appended and
fsynced at once under an exclusive lock (several annotators, several processes: nothing
interleaves or is lost), and nothing is ever rewritten. An undo is appended too, as a
``retract`` line that withdraws that annotator's latest standing answer on that clip.
A line cut by a kill during a write is skipped by the reader (and counted), and the next
append starts on a fresh line.

Columns: ``id`` (the pool's row id), ``label``, ``annotator``, ``time`` (UTC, ISO 8601),
``action`` (``label`` or ``retract``).

:func:`resolve_answers` turns the file into one label per clip: each annotator's latest
standing answer counts once, the majority wins, ties are left out and listed.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ANSWER_COLUMNS = ("id", "label", "annotator", "time", "action")
LABEL, RETRACT = "label", "retract"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Answer:
    id: str
    label: str
    annotator: str
    time: str
    action: str = LABEL


@dataclass
class AnswerLog:
    """What :func:`read_answers` found: the answers in file order, and the lines it could
    not read (a torn last line after a kill, a hand edit), as ``(line number, why)``."""

    answers: list[Answer]
    skipped: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Resolved:
    """One label per clip (:func:`resolve_answers`)."""

    #: id -> the majority label
    labels: dict[str, str]
    #: ids whose annotators are split evenly (left out of ``labels``)
    ties: list[str]
    #: id -> {annotator: that annotator's latest standing label}
    by_annotator: dict[str, dict[str, str]]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _clean(value: str, what: str, *, strip: bool = True) -> str:
    """``value`` as written: stripped, except an id (the pool's id is kept byte for byte,
    spaces and all, or the answer would not find its clip again)."""
    text = str(value).strip() if strip else str(value)
    if not text.strip():
        raise ValueError(f"answers.csv: empty {what}")
    if any(ch in text for ch in "\r\n\0"):
        raise ValueError(f"answers.csv: the {what} {text[:40]!r} holds a line break")
    return text


def append_answer(
    path: str | Path,
    *,
    id: str,  # noqa: A002 - the column's name
    label: str = "",
    annotator: str = ANONYMOUS,
    action: str = LABEL,
    time: str | None = None,
) -> Answer:
    """Append one answer (or, with ``action="retract"``, an undo) to ``path`` and fsync.

    Safe against other writers (an exclusive ``flock`` for the append) and against a kill
    (a line is whole or skipped by the reader; a torn tail gets a line break first)."""
    if action not in (LABEL, RETRACT):
        raise ValueError(f"answers.csv: action must be {LABEL!r} or {RETRACT!r}, not {action!r}")
    answer = Answer(
        id=_clean(id, "id", strip=False),
        label=_clean(label, "label") if action == LABEL else "",
        annotator=_clean(annotator or ANONYMOUS, "annotator"),
        time=time or _utc_now(),
        action=action,
    )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([getattr(answer, c) for c in ANSWER_COLUMNS])
    line = buffer.getvalue().encode("utf-8")
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        _lock(fd)
        size = os.fstat(fd).st_size
        header = (",".join(ANSWER_COLUMNS) + "\n").encode()
        prefix = b""
        if size == 0:
            prefix = header
        elif os.pread(fd, 1, size - 1) != b"\n":
            prefix = b"\n"  # a line torn by a kill: end it, it is skipped on reading
            if b"\n" not in os.pread(fd, min(size, 4096), 0):
                prefix += header  # the kill cut the header itself: write it again
        os.write(fd, prefix + line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return answer


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: appends of one write() do not interleave
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                yield number, ["<torn>"]  # the last line of a write cut by a kill
                continue
            yield number, next(csv.reader([line]), [])


def read_answers(path: str | Path) -> AnswerLog:
    """Every readable answer of ``path`` in file order (no file: none)."""
    path = Path(path)
    log = AnswerLog(answers=[])
    if not path.exists():
        return log
    header: list[str] | None = None
    for number, cells in _rows(path):
        if header is None:
            names = [c.strip().lower() for c in cells]
            missing = [c for c in ANSWER_COLUMNS[:3] if c not in names]
            if cells == ["<torn>"] or (number == 1 and _torn_header(names)):
                log.skipped.append((number, "a header cut by a kill"))
                continue
            if missing:
                raise ValueError(f"{path}: not an answers file (no column {', '.join(missing)})")
            header = names
            continue
        if not any(c.strip() for c in cells):
            continue
        if [c.strip().lower() for c in cells] == list(ANSWER_COLUMNS):
            header = list(ANSWER_COLUMNS)  # written again after a header cut by a kill
            continue
        if len(cells) != len(header):
            log.skipped.append((number, f"{len(cells)} fields, expected {len(header)}"))
            continue
        row = dict(zip(header, cells, strict=True))
        action = (row.get("action") or LABEL).strip() or LABEL
        if action not in (LABEL, RETRACT) or not row["id"].strip():
            log.skipped.append((number, "no id" if not row["id"].strip() else f"action {action!r}"))
            continue
        if action == LABEL and not row["label"].strip():
            log.skipped.append((number, "no label"))
            continue
        log.answers.append(
            Answer(
                id=row["id"],
                label=row["label"].strip(),
                annotator=row["annotator"].strip() or ANONYMOUS,
                time=(row.get("time") or "").strip(),
                action=action,
            )
        )
    return log


def _torn_header(names: list[str]) -> bool:
    """A first line that is a prefix of the header: the kill cut it (the append wrote a
    whole header after it)."""
    line = ",".join(names)
    cut_in_a_name = bool(names) and names[-1] not in ANSWER_COLUMNS
    return bool(line) and cut_in_a_name and ",".join(ANSWER_COLUMNS).startswith(line)


def standing_answers(answers: list[Answer]) -> dict[str, dict[str, str]]:
    """id -> {annotator: latest label not retracted}. A retraction withdraws that
    annotator's latest standing answer on the clip (so two undos withdraw two)."""
    stacks: dict[tuple[str, str], list[str]] = {}
    for answer in answers:
        stack = stacks.setdefault((answer.id, answer.annotator), [])
        if answer.action == RETRACT:
            if stack:
                stack.pop()
        else:
            stack.append(answer.label)
    standing: dict[str, dict[str, str]] = {}
    for (ident, annotator), stack in stacks.items():
        if stack:
            standing.setdefault(ident, {})[annotator] = stack[-1]
    return standing


def resolve_answers(path_or_answers: str | Path | list[Answer]) -> Resolved:
    """One label per clip: the majority of each annotator's latest standing answer; clips
    whose annotators split evenly are left out and listed in ``ties``. Takes the file, or
    the answers of one :func:`read_answers` (one snapshot of a file still being written)."""
    answers = (
        path_or_answers
        if isinstance(path_or_answers, list)
        else read_answers(path_or_answers).answers
    )
    standing = standing_answers(answers)
    labels: dict[str, str] = {}
    ties: list[str] = []
    for ident, by_annotator in standing.items():
        counts = Counter(by_annotator.values()).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            ties.append(ident)
        else:
            labels[ident] = counts[0][0]
    return Resolved(labels=labels, ties=sorted(ties), by_annotator=standing)


def answered_ids(path: str | Path) -> set[str]:
    """Ids with at least one standing answer (for ``suggest --exclude``)."""
    return set(standing_answers(read_answers(path).answers))
