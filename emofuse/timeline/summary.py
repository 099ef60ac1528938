"""What a timeline says at a glance: time per emotion, transitions and the longest runs.

Pure functions of the segment table (columns ``start_s``, ``end_s``, ``label``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd


def time_share(table: pd.DataFrame, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per label: seconds of speech it holds and its share of all segment time."""
    seconds = (table["end_s"] - table["start_s"]).groupby(table["label"]).sum()
    total = float(seconds.sum())
    return {
        label: {
            "seconds": round(float(seconds.get(label, 0.0)), 3),
            "share": round(float(seconds.get(label, 0.0)) / total, 4) if total else 0.0,
        }
        for label in labels
    }


def transitions(table: pd.DataFrame) -> dict[str, Any]:
    """Changes of label between consecutive segments: how many, and from -> to counts."""
    labels = list(table.sort_values("start_s")["label"])
    pairs = Counter((a, b) for a, b in zip(labels, labels[1:], strict=False) if a != b)
    return {
        "count": int(sum(pairs.values())),
        "pairs": [
            {"from": a, "to": b, "count": n}
            for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


def longest_runs(table: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Per label seen: its longest run of consecutive segments (start, end, span, count)."""
    best: dict[str, dict[str, float | int]] = {}
    rows = table.sort_values("start_s")[["start_s", "end_s", "label"]].itertuples(index=False)
    run: list[Any] = []
    for row in [*rows, None]:
        if run and (row is None or row.label != run[0].label):
            label = run[0].label
            span = run[-1].end_s - run[0].start_s
            if label not in best or span > best[label]["duration_s"]:
                best[label] = {
                    "start_s": round(float(run[0].start_s), 3),
                    "end_s": round(float(run[-1].end_s), 3),
                    "duration_s": round(float(span), 3),
                    "segments": len(run),
                }
            run = []
        if row is not None:
            run.append(row)
    return best


def summarize(table: pd.DataFrame, labels: Sequence[str]) -> dict[str, Any]:
    """The statistics of one timeline (an empty table gives zeros, not an error)."""
    voiced = float((table["end_s"] - table["start_s"]).sum()) if len(table) else 0.0
    shares = time_share(table, labels) if len(table) else {
        label: {"seconds": 0.0, "share": 0.0} for label in labels
    }  # fmt: skip
    dominant = max(shares, key=lambda k: shares[k]["seconds"]) if len(table) else None
    return {
        "segments": int(len(table)),
        "speech_s": round(voiced, 3),
        "dominant": dominant,
        "time_share": shares,
        "transitions": transitions(table) if len(table) else {"count": 0, "pairs": []},
        "longest_runs": longest_runs(table) if len(table) else {},
    }
