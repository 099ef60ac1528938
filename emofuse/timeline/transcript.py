"""Transcripts with times, and giving each segment its words.

A user's transcript file (SRT, WebVTT, or CSV/TSV with start, end and text columns) is a
list of cues; a cue's words are spread over its time in proportion to their length, so a
cue that spans two segments gives each the words spoken in it. Recognised words (Vosk)
come with their own times. Each word goes to the segment holding its midpoint, or to the
nearest segment within ``reach_s``.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TRANSCRIPT_FORMATS = ("srt", "vtt", "csv", "tsv")
START_COLUMNS = ("start_s", "start", "begin", "from", "start_time")
END_COLUMNS = ("end_s", "end", "stop", "to", "end_time")
TEXT_COLUMNS = ("text", "transcript", "sentence", "words", "utterance")
DEFAULT_REACH_S = 0.5
_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?$")
_ARROW = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


class TranscriptError(ValueError):
    """A transcript file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Word:
    """A word (or a cue's text) and when it was said."""

    start_s: float
    end_s: float
    text: str


def parse_time(value: str) -> float:
    """``"01:02:03,500"``, ``"02:03.5"`` or ``"123.5"`` -> seconds (ValueError if neither)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        match = _TIME.match(value)
        if not match:
            raise ValueError(f"not a time: {value!r}") from None
        hours, minutes, secs, fraction = match.groups()
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)
        seconds += float(f"0.{fraction}") if fraction else 0.0
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"not a time: {value!r}")
    return seconds


def read_transcript(path: str | Path) -> list[Word]:
    """The cues of an SRT, VTT or CSV/TSV transcript, sorted by start time."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(f"{path}: no such transcript file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TranscriptError(f"{path}: not UTF-8 text ({err.reason})") from err
    return parse_transcript(text, path)


def parse_transcript(text: str, path: str | Path) -> list[Word]:
    """:func:`read_transcript` of text already in memory; ``path`` gives the format (its
    suffix) and the name in messages."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind == "vtt" or text.lstrip().startswith("WEBVTT"):
        cues = _parse_cues(text, path, vtt=True)
    elif kind == "srt" or (kind not in ("csv", "tsv") and "-->" in text):
        cues = _parse_cues(text, path, vtt=False)
    elif kind in ("csv", "tsv", "txt"):
        cues = _parse_table(text, path, "\t" if kind == "tsv" else None)
    else:
        raise TranscriptError(
            f"{path}: unknown transcript format {path.suffix!r} (use .srt, .vtt, .csv or .tsv)"
        )
    return sorted(cues, key=lambda w: (w.start_s, w.end_s))


def _parse_cues(text: str, path: Path, *, vtt: bool) -> list[Word]:
    cues: list[Word] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _ARROW.match(line)
        if not match:
            i += 1
            continue
        try:
            start, end = parse_time(match.group(1)), parse_time(match.group(2))
        except ValueError as err:
            raise TranscriptError(f"{path}:{i + 1}: {err}") from None
        if end < start:
            raise TranscriptError(f"{path}:{i + 1}: cue ends ({end:g} s) before it starts")
        body = []
        i += 1
        while i < len(lines) and lines[i].strip():
            body.append(_TAG.sub("", lines[i]).strip())
            i += 1
        words = " ".join(b for b in body if b)
        if words:
            cues.append(Word(start, end, words))
    if not cues:
        kind = "WebVTT" if vtt else "SRT"
        raise TranscriptError(f"{path}: no {kind} cues ('00:00:01.000 --> 00:00:02.000' lines)")
    return cues


def _column(header: Sequence[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _parse_table(text: str, path: Path, delimiter: str | None) -> list[Word]:
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = max(",\t;", key=first.count)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise TranscriptError(f"{path}: empty transcript")
    header = rows[0]
    where = [_column(header, names) for names in (START_COLUMNS, END_COLUMNS, TEXT_COLUMNS)]
    if any(w is None for w in where):
        raise TranscriptError(
            f"{path}: needs columns start, end and text (found: {', '.join(header)})"
        )
    start_at, end_at, text_at = where
    cues = []
    for number, row in enumerate(rows[1:], start=2):
        try:
            start, end = parse_time(row[start_at]), parse_time(row[end_at])
            words = row[text_at].strip()
        except (ValueError, IndexError) as err:
            raise TranscriptError(f"{path}:{number}: {err}") from None
        if end < start:
            raise TranscriptError(f"{path}:{number}: ends ({end:g} s) before it starts")
        if words:
            cues.append(Word(start, end, words))
    return cues


def split_cues(cues: Sequence[Word]) -> list[Word]:
    """Each cue's words with times spread over the cue in proportion to their length."""
    out = []
    for cue in cues:
        tokens = cue.text.split()
        total = sum(len(t) for t in tokens) or 1
        at = cue.start_s
        for token in tokens:
            step = (cue.end_s - cue.start_s) * len(token) / total
            out.append(Word(at, at + step, token))
            at += step
    return out


def assign_words(
    segments: Sequence[tuple[float, float]],
    words: Sequence[Word],
    *,
    reach_s: float = DEFAULT_REACH_S,
) -> tuple[list[str], int]:
    """The text of each segment (sorted, non-overlapping ``(start_s, end_s)``) and the
    number of words that fell outside every segment."""
    starts = [a for a, _ in segments]
    texts: list[list[str]] = [[] for _ in segments]
    lost = 0
    for word in sorted(words, key=lambda w: w.start_s):
        mid = (word.start_s + word.end_s) / 2
        i = bisect.bisect_right(starts, mid) - 1
        candidates = [j for j in (i, i + 1) if 0 <= j < len(segments)]
        best, distance = None, float("inf")
        for j in candidates:
            a, b = segments[j]
            d = 0.0 if a <= mid <= b else min(abs(mid - a), abs(mid - b))
            if d < distance:
                best, distance = j, d
        if best is None or distance > reach_s:
            lost += 1
            continue
        texts[best].append(word.text)
    return [" ".join(t) for t in texts], lost
