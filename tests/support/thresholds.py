"""A confidence threshold that splits known top probabilities exactly (uncertain tests)."""

from __future__ import annotations

import numpy as np


def threshold_in_widest_gap(tops) -> float:
    """The middle of the widest gap between two distinct top probabilities: rounding of
    the probabilities shown (4 decimals in CSVs) cannot move a value across it."""
    ordered = np.unique(np.asarray(tops, dtype=np.float64))
    assert len(ordered) >= 2, ordered
    k = int(np.argmax(np.diff(ordered)))
    assert ordered[k + 1] - ordered[k] > 1e-3, ordered  # far beyond float noise
    return float((ordered[k] + ordered[k + 1]) / 2)
