"""Voiced stretches -> segments: the settings and the pure rules that turn frame scores
(speech probability and loudness per 32 ms frame, see :mod:`emofuse.timeline.vad`) into
``(start_s, end_s)`` segments.

1. A stretch starts where the speech probability reaches ``threshold`` and ends once it
   stays below ``threshold - 0.15`` for ``min_silence_s``; stretches shorter than
   ``min_speech_s`` are noise and go.
2. Each stretch is padded by ``pad_s`` (never into its neighbour).
3. A stretch longer than ``max_segment_s`` is cut at its quietest frame within the last
   ``split_search_s`` before that length, again and again.
4. A segment shorter than ``min_segment_s`` joins its nearest neighbour when the gap is at
   most ``merge_gap_s`` and the result fits ``max_segment_s``; otherwise it is dropped
   (unless it is the only one: a short recording keeps its one segment).

A segment says what a reader of its label should know (:meth:`Segment.warnings`, the
``warnings`` column of segments.csv): cut out of a longer stretch (rule 3), or shorter than
``min_segment_s`` (the one segment of a short recording).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from emofuse.timeline.vad import FRAME_S, FrameScores

#: How far below ``threshold`` the probability must fall to end a stretch (Silero's rule).
HYSTERESIS = 0.15


def _setting(default: float, help: str) -> Any:
    """A field of :class:`SegmentSettings` with its one-line help (the CLI's flag help)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SegmentSettings:
    """How a recording is cut into segments (every field has a one-line help)."""

    threshold: float = _setting(0.5, "speech probability at which a voiced stretch starts")
    min_silence_s: float = _setting(0.8, "a pause at least this long ends a voiced stretch")
    min_speech_s: float = _setting(0.25, "voiced stretches shorter than this are noise, dropped")
    pad_s: float = _setting(0.1, "seconds added before and after speech")
    max_segment_s: float = _setting(10.0, "longer stretches are split at the quietest point")
    split_search_s: float = _setting(3.0, "how far before max_segment_s to look for that point")
    min_segment_s: float = _setting(0.75, "shorter segments merge with a neighbour or are dropped")
    merge_gap_s: float = _setting(1.0, "the widest pause a short segment is merged across")
    block_s: float = _setting(30.0, "seconds of audio read at a time (bounds memory)")

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"SegmentSettings.threshold must be in (0, 1), not {self.threshold}")
        for name in ("max_segment_s", "block_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SegmentSettings.{name} must be positive")
        for name in (
            "min_silence_s", "min_speech_s", "pad_s", "split_search_s", "min_segment_s",
            "merge_gap_s",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"SegmentSettings.{name} must not be negative")
        if self.min_segment_s > self.max_segment_s:
            raise ValueError("SegmentSettings.min_segment_s must not exceed max_segment_s")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def help() -> dict[str, str]:
        """Field name -> its one-line help."""
        return {f.name: f.metadata["help"] for f in fields(SegmentSettings)}


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    #: its voiced stretch began before its start / goes on after its end (cut by rule 3)
    cut_before: bool = field(default=False, compare=False)
    cut_after: bool = field(default=False, compare=False)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def warnings(self, settings: SegmentSettings) -> list[str]:
        """What the segmentation knows that weakens this segment's label, each starting
        with its kind (``cut: ...``, ``short: ...``)."""
        found = []
        if self.cut_before or self.cut_after:
            where = " and ".join(
                part
                for part, cut in (("began before it", self.cut_before),
                                  ("goes on after it", self.cut_after))
                if cut
            )  # fmt: skip
            found.append(
                f"cut: part of a longer stretch of speech that {where} (stretches over "
                f"max_segment_s = {settings.max_segment_s:g} s are cut at their quietest point)"
            )
        if self.duration_s < settings.min_segment_s:
            found.append(
                f"short: {self.duration_s:.2f} s, under min_segment_s = "
                f"{settings.min_segment_s:g} s: a label from so little speech is weak"
            )
        return found


def find_segments(scores: FrameScores, settings: SegmentSettings) -> list[Segment]:
    """The segments of a scanned recording (see the module docstring for the rules)."""
    probs, levels = scores.speech_prob, scores.level_db
    stretches = _voiced_stretches(probs, settings)
    stretches = [s for s in stretches if (s[1] - s[0]) * FRAME_S >= settings.min_speech_s]
    spans = _padded(stretches, settings.pad_s, scores.duration_s)
    split: list[tuple[float, float]] = []
    cuts: set[float] = set()  # where rule 3 cut; a merge across one removes it
    for start, end in spans:
        pieces = _split_long(start, end, levels, settings)
        cuts.update(b for _, b in pieces[:-1])
        split.extend(pieces)
    merged = _merge_short(split, settings)
    return [Segment(round(a, 3), round(b, 3), a in cuts, b in cuts) for a, b in merged]


def _voiced_stretches(probs: np.ndarray, settings: SegmentSettings) -> list[tuple[int, int]]:
    """``(first_frame, end_frame)`` runs with hysteresis and a minimum pause."""
    on, off = settings.threshold, max(settings.threshold - HYSTERESIS, 0.01)
    need_silence = max(1, round(settings.min_silence_s / FRAME_S))
    out: list[tuple[int, int]] = []
    start: int | None = None
    quiet_since: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= on:
                start, quiet_since = i, None
            continue
        if p >= off:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = i
        if quiet_since is not None and i - quiet_since + 1 >= need_silence:
            out.append((start, quiet_since))
            start, quiet_since = None, None
    if start is not None:
        out.append((start, quiet_since if quiet_since is not None else len(probs)))
    return out


def _padded(
    stretches: list[tuple[int, int]], pad_s: float, duration_s: float
) -> list[tuple[float, float]]:
    spans = [(a * FRAME_S, min(b * FRAME_S, duration_s)) for a, b in stretches]
    out = []
    for i, (a, b) in enumerate(spans):
        low = (spans[i - 1][1] + a) / 2 if i else 0.0
        high = (b + spans[i + 1][0]) / 2 if i + 1 < len(spans) else duration_s
        out.append((max(a - pad_s, low), min(b + pad_s, high)))
    return out


def _split_long(
    start: float, end: float, levels: np.ndarray, settings: SegmentSettings
) -> list[tuple[float, float]]:
    out = []
    limit = settings.max_segment_s
    while end - start > limit:
        earliest = start + max(limit - settings.split_search_s, settings.min_segment_s, FRAME_S)
        first = int(np.ceil(earliest / FRAME_S))
        last = max(int(np.floor((start + limit) / FRAME_S)), first)
        window = levels[first : last + 1]
        if len(window) == 0:
            cut = start + limit
        else:
            smooth = (
                np.convolve(window, np.ones(3) / 3, mode="same") if len(window) >= 3 else window
            )
            cut = (first + int(np.argmin(smooth))) * FRAME_S
        cut = min(max(cut, start + FRAME_S), start + limit)
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def _merge_short(
    spans: list[tuple[float, float]], settings: SegmentSettings
) -> list[tuple[float, float]]:
    if len(spans) == 1:  # a recording shorter than one segment keeps what it has
        return list(spans)
    spans = list(spans)
    i = 0
    while i < len(spans):
        a, b = spans[i]
        if b - a >= settings.min_segment_s:
            i += 1
            continue
        options = []
        if i > 0:
            gap = a - spans[i - 1][1]
            if gap <= settings.merge_gap_s and b - spans[i - 1][0] <= settings.max_segment_s:
                options.append((gap, i - 1))
        if i + 1 < len(spans):
            gap = spans[i + 1][0] - b
            if gap <= settings.merge_gap_s and spans[i + 1][1] - a <= settings.max_segment_s:
                options.append((gap, i + 1))
        if not options:
            spans.pop(i)
            continue
        _, j = min(options)
        lo, hi = min(i, j), max(i, j)
        spans[lo : hi + 1] = [(spans[lo][0], spans[hi][1])]
        i = lo  # the merged segment may still be short
    return spans
