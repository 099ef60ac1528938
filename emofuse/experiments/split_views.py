"""The grid's splits: one view per split strategy (or per CV fold), each checked with
the leakage report for what its strategy promises and written to ``<output>/splits/``
so any figure can be traced to its test part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.experiments.config import CV_STRATEGIES, GridConfig, GridRunError

SPLITS_DIR = "splits"


def split_key(strategy: str, fold: str) -> str:
    return f"{strategy}__{fold}" if fold else strategy


@dataclass
class SplitView:
    strategy: str
    fold: str
    part: np.ndarray  # over table rows: train / val / test, "" for rows the split dropped

    @property
    def key(self) -> str:
        return split_key(self.strategy, self.fold)

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.part == name)

    def with_held_out(self, train: np.ndarray) -> np.ndarray:
        """``train`` rows followed by this split's val and test rows (what a cell reads)."""
        return np.concatenate([train, self.rows("val"), self.rows("test")])


def _part_array(part: pd.Series, table: pd.DataFrame) -> np.ndarray:
    return part.reindex(table.index).fillna("").astype(str).to_numpy().astype(object)


def make_splits(table: pd.DataFrame, config: GridConfig) -> list[SplitView]:
    """Every split of the grid (one per fold for CV strategies), checked for leakage of
    what each strategy keeps apart."""
    from emofuse.splits import SplitError, assign_split, cross_validation_folds

    s = config.split
    views = []
    for strategy in s.strategies:
        try:
            if strategy in CV_STRATEGIES:
                folds = cross_validation_folds(
                    table, strategy, k=s.k, group=s.group, seed=s.seed, val_size=s.val_size
                )
                views += [SplitView(strategy, f.name, _part_array(f.part, table)) for f in folds]
            else:
                split = assign_split(
                    table, strategy, test_size=s.test_size, val_size=s.val_size, seed=s.seed
                )
                views.append(SplitView(strategy, "", _part_array(split["part"], table)))
        except SplitError as err:
            raise GridRunError(
                f"split.strategies: {strategy!r} cannot split this corpus: {err}"
            ) from err
    for view in views:
        check_disjoint(table, view, config)
    return views


def check_disjoint(table: pd.DataFrame, view: SplitView, config: GridConfig) -> None:
    """Raise if the split shares between parts what its strategy keeps apart (speakers,
    sentences, both, or the CV group), as :func:`emofuse.splits.leakage_report` sees it:
    a figure from such a split would silently include leakage."""
    from emofuse.splits import leakage_report, promised_apart

    promised = promised_apart(view.strategy, group=config.split.group)
    kinds = tuple(k for k in promised if k in table.columns)
    if not kinds:
        return
    groups = tuple(k for k in kinds if k not in ("speaker", "text"))
    report = leakage_report(table.assign(part=view.part), groups=groups)
    for kind in kinds:
        leak = report.first_leak(kind)
        if leak is not None:
            value, a, b = leak
            raise GridRunError(f"split {view.key}: {kind} {value!r} is in both {a} and {b}")


def write_split(table: pd.DataFrame, view: SplitView, out_dir: Path) -> Path:
    path = out_dir / SPLITS_DIR / f"{view.key}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        pd.DataFrame({"id": table["id"], "part": view.part}).to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def fold_names(config: GridConfig, table: pd.DataFrame | None) -> dict[str, list[str]]:
    """Fold names per strategy without running a split where possible (dry runs)."""
    out: dict[str, list[str]] = {}
    for strategy in config.split.strategies:
        if strategy == "kfold":
            out[strategy] = [f"fold{i + 1}" for i in range(config.split.k)]
        elif strategy == "logo":
            if table is None or config.split.group not in table.columns:
                out[strategy] = []
            else:
                values = table[config.split.group].fillna("").astype(str).str.strip()
                out[strategy] = [str(v) for v in pd.unique(values.to_numpy())]
        else:
            out[strategy] = [""]
    return out
