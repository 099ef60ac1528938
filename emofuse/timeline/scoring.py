"""How well segments recover known clips: IoU matching and boundary error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass
class SegmentMatch:
    """Per true clip: the best-overlapping segment (index, IoU; -1 and 0 when none)."""

    segment: np.ndarray
    iou: np.ndarray

    def matched(self, threshold: float = 0.5) -> np.ndarray:
        return self.iou >= threshold

    def share_matched(self, threshold: float = 0.5) -> float:
        return float(self.matched(threshold).mean()) if len(self.iou) else 0.0


def match_segments(
    truth: Sequence[tuple[float, float]], found: Sequence[tuple[float, float]]
) -> SegmentMatch:
    best_index = np.full(len(truth), -1)
    best_iou = np.zeros(len(truth))
    j0 = 0
    for i, clip in enumerate(truth):
        while j0 < len(found) and found[j0][1] < clip[0]:
            j0 += 1
        j = j0
        while j < len(found) and found[j][0] <= clip[1]:
            score = iou(clip, found[j])
            if score > best_iou[i]:
                best_index[i], best_iou[i] = j, score
            j += 1
    return SegmentMatch(best_index, best_iou)


def boundary_error_s(
    truth: Sequence[tuple[float, float]],
    found: Sequence[tuple[float, float]],
    match: SegmentMatch,
    threshold: float = 0.5,
) -> float:
    """Mean |start difference| and |end difference| over matched clips (NaN if none)."""
    errors = [
        abs(truth[i][k] - found[j][k])
        for i, j in enumerate(match.segment)
        if match.iou[i] >= threshold
        for k in (0, 1)
    ]
    return float(np.mean(errors)) if errors else float("nan")
