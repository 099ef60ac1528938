"""The labels an annotator chooses from (``emofuse label --label-set``): ``korean`` (the seven
emotions), a comma list, or a file with one label per line; their order is the key order
(1-9 for the first nine)."""

from __future__ import annotations

from pathlib import Path

from emofuse.corpus.detect import parse_label_set
from emofuse.corpus.scan import CorpusError
from emofuse.labels import LabelSet


class LabelSetError(ValueError):
    """A label set that cannot be used; the message names it and the fix."""


def read_label_set(spec: str) -> LabelSet:
    """``spec`` as a file of labels (one a line, ``#`` comments) when such a file exists,
    else ``korean`` or a comma list. Names differing only in case or spacing are one label."""
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise LabelSetError(f"{path}: cannot read the label file: {err}") from None
        names = [
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        ]
        where = str(path)
    else:
        names = None
        where = repr(spec)
    try:
        labels = parse_label_set(names if names is not None else spec)
    except CorpusError as err:
        raise LabelSetError(f"{where}: {err}") from None
    return check_label_set(labels, where)


def check_label_set(labels: LabelSet, where: str) -> LabelSet:
    """At least two labels, none with a line break or a NUL (a comma is fine: answers.csv
    quotes it)."""
    if len(labels) < 2:
        raise LabelSetError(
            f"{where}: a label set needs at least two labels (a comma list such as "
            "'calm,tense', 'korean', or a file with one label per line)"
        )
    for name in labels.names:
        if any(ch in name for ch in "\r\n\0"):
            raise LabelSetError(f"{where}: the label {name[:40]!r} holds a line break")
    return labels
