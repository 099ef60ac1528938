"""The record of one grid run (:class:`GridRun`): the runner fills it in and
:mod:`~emofuse.experiments.report` adds the report's files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class GridRun:
    """What a call of :func:`~emofuse.experiments.runner.run_grid` did and where its
    outputs are."""

    output_dir: Path
    results: pd.DataFrame  # rows of this grid's cells only
    cells: int
    ran: int
    skipped: int
    failed: list[tuple[str, str]]  # (cell_id, error)
    seconds: dict[str, float]
    tables: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)
