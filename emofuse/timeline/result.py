"""What a timeline is: :class:`Timeline`, one row per segment and what they add up to.

:func:`emofuse.timeline.run.build_timeline` makes one; :mod:`emofuse.timeline.outputs`
writes one to disk (``Timeline.save``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emofuse.timeline.outputs import write_timeline


@dataclass
class Timeline:
    """One row per segment (``table``) and what it adds up to (``summary``)."""

    table: pd.DataFrame
    summary: dict[str, Any]
    labels: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return len(self.table) == 0

    @property
    def message(self) -> str | None:
        return self.summary.get("message")

    def channels(self) -> dict[str, pd.DataFrame]:
        """The table per channel (``{"mix": table}`` for a mixed-down recording)."""
        if "channel" not in self.table:
            return {"mix": self.table}
        return {str(c): t.reset_index(drop=True) for c, t in self.table.groupby("channel")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"segments": [row, ...], "summary": {...}}``."""
        rows = json.loads(self.table.to_json(orient="records", force_ascii=False))
        return {"segments": rows, "summary": self.summary}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write segments.csv, summary.json and timeline.png; returns their paths."""
        return write_timeline(self, out_dir)
