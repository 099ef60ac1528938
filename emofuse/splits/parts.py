"""What every split shares: the parts it makes (train / val / test), the error it raises,
and the small checks on a table that assignment, folds and the leakage report all make.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emofuse.corpus.table import require_columns

PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split that cannot be made from this table, with the reason and a way out."""


def needed_parts(fractions: dict[str, float]) -> list[str]:
    """The parts, in :data:`PARTS` order, that ``fractions`` gives a share."""
    return [p for p in PARTS if fractions.get(p, 0) > 0]


def label_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a column's values (as strings), in order of appearance."""
    return pd.factorize(values.astype(str).to_numpy())[0]


def require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """A :class:`SplitError` naming ``what`` needs the ``columns`` the table lacks."""
    require_columns(table, columns, what, SplitError)
