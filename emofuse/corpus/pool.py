"""An unlabelled pool: the clips a person may label next (`emofuse suggest`, `emofuse label`).

A pool is a manifest (CSV, TSV, JSONL or Parquet) read by the same rules as `prepare`'s
(:mod:`emofuse.corpus.manifest`: column names, paths relative to the manifest, ids), except
that its ``label`` column may be absent or blank. A row whose label is given keeps it (a
clip already labelled, e.g. to leave out of the suggestions). Without an ``audio`` column
the pool is text only. `prepare` keeps its own rule: a row without a label is a problem
there, never a clip.

The same manifest gives each clip the same id here and in `prepare`, so answers keyed on
a pool's ids join the corpus that `prepare` makes (:mod:`emofuse.corpus.joined`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emofuse.corpus.manifest import MANIFEST_SUFFIXES, read_manifest_rows
from emofuse.corpus.rows import build_result
from emofuse.corpus.table import ScanResult

POOL_SUFFIXES = (*MANIFEST_SUFFIXES, ".parquet")


@dataclass
class Pool(ScanResult):
    """The clips of a pool manifest: a :class:`ScanResult` whose table has the usual
    columns (:data:`~emofuse.corpus.table.COLUMNS`; ``label`` is ``""`` for a clip not yet
    labelled) in the manifest's order, and whose ``labels`` are the labels present.

    ``original`` holds the manifest's own columns, every one as spelled there and as
    strings, row ``i`` beside ``table`` row ``i``: what an output that "keeps the pool's
    columns" writes. ``extra`` is the part of it that the table does not already hold.
    """

    source: Path = field(default_factory=Path)
    original: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: table column (audio, text, …) -> the manifest's column it was read from
    columns: dict[str, str] = field(default_factory=dict)
    _positions: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def extra(self) -> pd.DataFrame:
        """The manifest's columns that no table column was read from, aligned by row."""
        used = set(self.columns.values())
        return self.original[[c for c in self.original.columns if c not in used]]

    @property
    def labelled(self) -> pd.Series:
        """True for each row that already has a label."""
        return self.table["label"] != ""

    def row(self, ident: str) -> dict[str, Any]:
        """The table row of the clip with id ``ident`` (its ``audio`` is the pool's own
        path: look clips up by id, never by a path a client sends); a ``KeyError`` for an
        id the pool does not have."""
        if self._positions is None:
            self._positions = {ident: i for i, ident in enumerate(self.table["id"].tolist())}
        position = self._positions.get(str(ident))
        if position is None:
            raise KeyError(f"{self.source}: no clip with id {str(ident)[:80]!r} in the pool")
        return {c: _plain(v) for c, v in self.table.iloc[position].items()}

    def summary(self) -> str:
        labelled = int(self.labelled.sum())
        head = f"pool {self.source}: {len(self.table)} clips, {labelled} already labelled"
        lines = [line for line in super().summary().splitlines() if line != "labels: "]
        return "\n".join([head, *lines])


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON and equality)."""
    return value.item() if hasattr(value, "item") else value


def read_pool(path: str | Path, *, progress: bool = False, workers: int | None = None) -> Pool:
    """Read the pool manifest at ``path`` (CSV, TSV, JSONL or Parquet); durations come from
    the audio headers, and rows that cannot be used (a missing file, an empty transcript
    in a text column, a repeated id) are ``problems``, as in `prepare`."""
    found = read_manifest_rows(
        path, labelled=False, suffixes=POOL_SUFFIXES, workers=workers, progress=progress
    )
    result = build_result(
        found.rows, found.problems, labels=found.labels, notes=found.notes, sort=False
    )
    original = found.frame.iloc[found.records].reset_index(drop=True)
    return Pool(
        table=result.table,
        problems=result.problems,
        labels=[label for label in result.labels if label],
        notes=result.notes,
        source=Path(path).expanduser().absolute(),
        original=original,
        columns=dict(found.columns),
    )
