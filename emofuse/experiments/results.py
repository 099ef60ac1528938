"""``results.csv``, the grid's resume log (one flushed row per finished cell), and the
files each cell leaves under ``cells/<cell_id>/`` (training ids, settings, metrics)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from emofuse.experiments.config import GridConfig, GridRunError
from emofuse.experiments.plan import Cell
from emofuse.experiments.split_views import SPLITS_DIR, SplitView

RESULT_COLUMNS = (
    "cell_id",
    "split_strategy",
    "fold",
    "modality",
    "speech_encoder",
    "text_encoder",
    "per_label",
    "order",
    "seed",
    "speaker_norm",
    "speaker_adapted",
    "n_train",
    "n_val",
    "n_test",
    "uar",
    "accuracy",
    "macro_f1",
    "best_epoch",
    "seconds",
    "train_ids_file",
)
#: Columns added after the first release: an older results.csv is read with them filled in
#: (``speaker_norm`` from the cell's ``cell.json``, which has always recorded it; blank
#: where unknown) and rewritten with them before an append.
LATER_COLUMNS = ("speaker_norm", "speaker_adapted")
RESULTS_FILE = "results.csv"
CELLS_DIR = "cells"
#: results.csv columns that hold numbers, by type (a row where one does not parse is cut).
_NUMBERS = {
    float: ("uar", "accuracy", "macro_f1", "seconds"),
    int: ("seed", "n_train", "n_val", "n_test", "best_epoch"),
}


class ResultsFile:
    """``results.csv``: one row per finished cell, appended and flushed as cells finish.

    A kill can leave a half-written last line; it is cut off when the file is opened for
    appending (that cell simply runs again)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        """Complete rows only (a row whose numbers do not parse is ignored), last row per
        cell id wins."""
        if not self.path.exists() or b"\n" not in self.path.read_bytes()[:4096]:
            return pd.DataFrame(columns=list(RESULT_COLUMNS))  # new, empty or header cut short
        rows = []
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return pd.DataFrame(columns=list(RESULT_COLUMNS))
            missing = [c for c in RESULT_COLUMNS if c not in header and c not in LATER_COLUMNS]
            if missing:
                raise GridRunError(
                    f"{self.path}: not a results file of this version (no {', '.join(missing)} "
                    "column); move it away or choose another output folder"
                )
            for values in reader:
                if len(values) != len(header):
                    continue
                row = dict(zip(header, values, strict=True))
                try:
                    for kind, keys in _NUMBERS.items():
                        row.update({key: kind(row[key]) for key in keys})
                except ValueError:
                    continue
                rows.append(row)
        frame = pd.DataFrame(rows, columns=header)
        for key in LATER_COLUMNS:
            if key not in frame:
                frame[key] = [self._cell_setting(c, key) for c in frame["cell_id"]]
        frame = frame[[*RESULT_COLUMNS, *(c for c in frame.columns if c not in RESULT_COLUMNS)]]
        if len(frame):
            frame = frame.drop_duplicates("cell_id", keep="last").reset_index(drop=True)
        for key in ("cell_id", "split_strategy", "fold", "modality", "speech_encoder",
                    "text_encoder", "per_label", "order", "train_ids_file", *LATER_COLUMNS):  # fmt: skip
            frame[key] = frame[key].astype(object)
        return frame

    def _cell_setting(self, cell_id: str, key: str) -> str:
        """``key`` as the cell's ``cell.json`` records it ("" when it does not)."""
        try:
            info = json.loads((self.path.parent / CELLS_DIR / cell_id / "cell.json").read_text())
        except (OSError, ValueError):
            return ""
        value = info.get(key) if isinstance(info, dict) else None
        return "" if value is None else str(value)

    def finished(self) -> set[str]:
        return set(self.read()["cell_id"])

    def _repair(self) -> None:
        """Cut a half-written last line; write the header into a new or empty file (also
        one whose only line, the header, was cut short); upgrade a file written before
        :data:`LATER_COLUMNS`."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb+") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 1))
                if handle.read(1) != b"\n":
                    handle.truncate(self.path.read_bytes().rfind(b"\n") + 1)
            if self.path.stat().st_size > 0:
                self._upgrade()
                return
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(RESULT_COLUMNS)

    def _upgrade(self) -> None:
        """Rewrite an older file with today's columns (whole, then renamed into place)."""
        with self.path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if all(c in header for c in RESULT_COLUMNS):
            return
        from emofuse.outputs import write_whole

        frame = self.read()
        with write_whole(self.path) as partial:
            frame.to_csv(partial, index=False)

    def append(self, row: dict[str, Any]) -> None:
        self._repair()
        values = ["" if row.get(c) is None else row[c] for c in RESULT_COLUMNS]
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(values)
            handle.flush()
            os.fsync(handle.fileno())


def train_ids_file(cell_id: str) -> str:
    """Where a cell's training ids are, relative to the output folder."""
    return str(Path(CELLS_DIR) / cell_id / "train_ids.txt")


def write_cell_files(
    out: Path,
    cell: Cell,
    cell_id: str,
    config: GridConfig,
    train_ids: Iterable[str],
    view: SplitView,
    n_val: int,
    n_test: int,
) -> None:
    """``cells/<cell_id>/train_ids.txt`` and ``cell.json`` (settings, split file, sizes)."""
    folder = out / CELLS_DIR / cell_id
    folder.mkdir(parents=True, exist_ok=True)
    (out / train_ids_file(cell_id)).write_text(
        "".join(f"{i}\n" for i in train_ids), encoding="utf-8"
    )
    info = {
        "cell_id": cell_id,
        **asdict(cell),
        "settings": cell.settings(config),
        "split_file": str(Path(SPLITS_DIR) / f"{view.key}.csv"),
        "n_val": n_val,
        "n_test": n_test,
    }
    (folder / "cell.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
    )


def write_cell_metrics(out: Path, cell_id: str, metrics: dict[str, Any]) -> None:
    (out / CELLS_DIR / cell_id / "metrics.json").write_text(
        json.dumps(metrics, indent=1), encoding="utf-8"
    )


def result_row(
    cell: Cell, cell_id: str, sizes: dict[str, int], outcome: dict[str, Any]
) -> dict[str, Any]:
    """The results.csv row of a finished cell (``sizes``: train / val / test rows)."""
    metrics = outcome["metrics"]
    return {
        "cell_id": cell_id,
        **asdict(cell),  # split_strategy, fold, modality, encoders, per_label, order, seed
        "per_label": cell.per_label_text,
        **{f"n_{part}": n for part, n in sizes.items()},
        **{key: round(metrics[key], 6) for key in ("uar", "accuracy", "macro_f1")},
        "speaker_adapted": "yes" if outcome.get("speaker_adapted") else "no",
        "best_epoch": outcome["best_epoch"],
        "seconds": round(outcome["seconds"], 3),
        "train_ids_file": train_ids_file(cell_id),
    }
