"""The confidence threshold: when a prediction is marked uncertain.

A prediction is ``uncertain`` when its top probability (the fused one for a ``both``
bundle) is below ``min_confidence``; its label stays the most probable one, so nothing is
hidden. There is no separate "answer" field: a sentinel label would sit among real emotion
names, and a caller that wants one writes ``"uncertain" if p.uncertain else p.label``.
Every caller (:class:`emofuse.predict.PredictionEngine`, the manifest writer, the service)
applies :func:`is_uncertain`, so the flag is the same whichever way a clip is scored. Kept
apart from :mod:`emofuse.predict` so the service's request checks need no torch import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def check_min_confidence(value: float | None, name: str = "min_confidence") -> float | None:
    """``value`` as a float in [0, 1], or None when not given; a clear ValueError naming
    ``name`` (a flag, a field) otherwise. 0 and None both mark nothing uncertain."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(
            f"{name} must be a probability between 0 and 1 (0 or none: off), not {value!r}"
        )
    return number


def is_uncertain(
    probabilities: Mapping[str, float] | Sequence[float] | np.ndarray,
    min_confidence: float | None,
) -> bool:
    """Whether the top probability is below ``min_confidence`` (never with None or 0; a
    top probability equal to the threshold is not uncertain)."""
    if not min_confidence:
        return False
    values = probabilities.values() if isinstance(probabilities, Mapping) else probabilities
    return float(np.max(np.asarray(list(values), dtype=np.float64))) < float(min_confidence)
