"""Train / val / test splits that keep people and sentences apart, the report that checks
a split for leakage, and cross-validation folds.

- :mod:`~emofuse.splits.assign`: :func:`assign_split` and its strategies;
- :mod:`~emofuse.splits.groups`: the groups (speakers, sentences) a split keeps whole;
- :mod:`~emofuse.splits.leakage`: :func:`leakage_report`, :func:`promised_apart`;
- :mod:`~emofuse.splits.folds`: :func:`cross_validation_folds`;
- :mod:`~emofuse.splits.parts`: :data:`PARTS` and :class:`SplitError`.
"""

from emofuse.splits.assign import SPLIT_STRATEGIES, assign_split
from emofuse.splits.folds import CV_SCHEMES, Fold, cross_validation_folds
from emofuse.splits.leakage import LeakageReport, leakage_report, promised_apart
from emofuse.splits.parts import PARTS, SplitError

__all__ = [
    "CV_SCHEMES",
    "PARTS",
    "SPLIT_STRATEGIES",
    "Fold",
    "LeakageReport",
    "SplitError",
    "assign_split",
    "cross_validation_folds",
    "leakage_report",
    "promised_apart",
]
