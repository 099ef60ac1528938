"""A long recording -> an emotion timeline: segment it, give each segment its words,
predict each segment with the bundle, summarise.

The recording is read twice in blocks (once to find the segments and the words, once to
cut the segments out for prediction), so memory is bounded by a block and a batch of
segments whatever the recording's length. A bundle that adapts to speakers treats each
channel as one speaker (:mod:`emofuse.timeline.adapt`: ``adapt="whole"`` or
``"causal"``); then segments.csv has a ``speaker_clips`` column. Each pass shows a bar
of the recording's seconds (:mod:`emofuse.timeline.progress`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from emofuse import audio_checks
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ
from emofuse.predict.rows import SEGMENT_ROW, prediction_row
from emofuse.timeline.adapt import ADAPT_CHOICES, Adapt, SegmentScorer, adapts_to_speakers
from emofuse.timeline.progress import PassBar
from emofuse.timeline.reader import (
    ANALYSIS_RATE_HZ,
    RecordingInfo,
    RecordingSource,
    iter_blocks,
    iter_spans,
    recording_info,
)
from emofuse.timeline.result import Timeline
from emofuse.timeline.segment import Segment, SegmentSettings, find_segments
from emofuse.timeline.summary import summarize
from emofuse.timeline.transcript import Word, assign_words, read_transcript, split_cues
from emofuse.timeline.vad import VadScanner

Channels = Literal["mix", "separate"]
CHANNEL_CHOICES = ("mix", "separate")
DEFAULT_BATCH_SIZE = 16
TEXT_WAYS_OUT = (
    "pass --asr vosk (recognise the words) or --transcript FILE (an SRT, VTT or CSV with "
    "times); in Python asr='vosk' or transcript='file.srt'"
)
NO_SPEECH = "no speech found in {name} ({duration:.1f} s): the timeline is empty"


class TimelineError(ValueError):
    """A timeline that cannot be built as asked; the message says why and what to do."""


class _NoWords:
    """Stands in for a recogniser for segments that got no words: the bundle then reads
    an empty text and says so in its warnings (``empty_warning``: from the transcript, or
    from speech recognition), instead of refusing the segment."""

    def __init__(self, no_words: str):
        self.empty_warning = (
            f"{no_words} in this segment: the text branch saw an empty transcript, so this "
            "prediction rests on the audio alone"
        )

    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> str:
        return ""


def build_timeline(
    bundle: Any,
    path: RecordingSource,
    *,
    settings: SegmentSettings | None = None,
    asr: Any = None,
    transcript: str | Path | Sequence[Word] | None = None,
    channels: Channels = "mix",
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    min_confidence: float | None = None,
    adapt: Adapt = "whole",
) -> Timeline:
    """The emotion timeline of the recording at ``path`` (see the module docstring), a
    file or an :class:`emofuse.timeline.reader.InMemoryRecording` (never written to disk).

    ``asr``: ``"vosk"`` or a :class:`emofuse.asr.VoskTranscriber` (word timestamps give
    each segment its text); ``transcript``: an SRT/VTT/CSV file or words with times.
    ``channels="separate"`` makes one timeline per channel (a ``channel`` column).
    ``min_confidence``: segments whose top probability is below it get ``uncertain``
    (:mod:`emofuse.head.confidence`, the rule ``predict`` and ``serve`` apply).
    ``adapt``: a bundle that adapts to speakers normalises each channel's segments by the
    statistics of the ``whole`` channel, or (``causal``) of the segments up to each one
    (:mod:`emofuse.timeline.adapt`); ignored for a bundle that does not adapt.
    """
    from emofuse.head.confidence import check_min_confidence

    try:
        min_confidence = check_min_confidence(min_confidence)
    except ValueError as err:
        raise TimelineError(str(err)) from None
    settings = settings or SegmentSettings()
    if channels not in CHANNEL_CHOICES:
        raise TimelineError(
            f"channels must be one of {', '.join(CHANNEL_CHOICES)}, not {channels!r}"
        )
    if batch_size < 1:
        raise TimelineError(f"batch_size must be at least 1, not {batch_size}")
    if adapt not in ADAPT_CHOICES:
        raise TimelineError(f"adapt must be one of {', '.join(ADAPT_CHOICES)}, not {adapt!r}")
    info = recording_info(path)
    if isinstance(asr, str):
        from emofuse.asr import build_asr

        asr = build_asr(asr)  # "none" -> None
    needs_text = bool(getattr(bundle, "needs_text", False))
    if needs_text and asr is None and transcript is None:
        raise TimelineError(
            f"{getattr(bundle, 'path', 'the bundle')}: this bundle reads text as well as "
            f"speech and none was given for {info.path}: {TEXT_WAYS_OUT}"
        )
    given_words: list[Word] | None = None
    if transcript is not None:
        given_words = split_cues(
            read_transcript(transcript) if isinstance(transcript, str | Path) else transcript
        )
        asr = None  # the user's own words win over recognition
    channel_list: list[int | None] = [None] if channels == "mix" else list(range(info.channels))
    labels = list(bundle.labels)
    tables, stats, lost_words = [], {}, 0
    no_words = (
        "the transcript has no words" if given_words is not None
        else "speech recognition heard no words"
    )  # fmt: skip
    for channel in channel_list:
        name = "mix" if channel is None else str(channel)
        of = "" if channel is None else f" (channel {name})"
        with PassBar(info.duration_s, f"finding speech{of}", progress) as bar:
            segments, words = _scan(info.path, channel, settings, asr, bar)
        if given_words is not None:
            words = given_words
        texts, lost = assign_words(
            [(s.start_s, s.end_s) for s in segments], words or []
        ) if words is not None else ([None] * len(segments), 0)  # fmt: skip
        lost_words += lost
        scorer = SegmentScorer(
            bundle, adapt=adapt, speaker=name,
            asr=_NoWords(no_words) if needs_text else None,
            batch_size=batch_size,
        )  # fmt: skip
        with PassBar(info.duration_s, f"predicting{of}", progress) as bar:
            table = _predict(
                bundle, info.path, channel, segments, texts, settings, batch_size, bar,
                scorer, min_confidence,
            )  # fmt: skip
        if channels == "separate":
            table.insert(0, "channel", name)
        tables.append(table)
        stats[name] = summarize(table, labels)
    table = pd.concat(tables, ignore_index=True) if tables else _empty_table(labels)
    summary: dict[str, Any] = {
        "recording": {
            "path": str(info.path),
            "duration_s": round(info.duration_s, 3),
            "sample_rate_hz": info.sample_rate_hz,
            "channels": info.channels,
        },
        "bundle": str(getattr(bundle, "path", "")),
        "labels": labels,
        "text_from": "transcript" if given_words is not None else "vosk" if asr else None,
        "words_outside_segments": lost_words,
        **(summarize(table, labels) if channels == "mix" else _pooled(table, labels, stats)),
        "settings": {
            **settings.to_dict(),
            "channels": channels,
            "batch_size": batch_size,
            "min_confidence": min_confidence,
            "speaker_adapt": adapt if adapts_to_speakers(bundle) else None,
        },
        "message": NO_SPEECH.format(name=info.path, duration=info.duration_s)
        if len(table) == 0
        else None,
        "warnings": recording_warnings(info),
    }
    if channels == "separate":
        summary["channels_summary"] = stats
    if "uncertain" in table.columns:
        summary["uncertain_segments"] = int(table["uncertain"].sum())
    return Timeline(table, summary, labels)


def recording_warnings(info: RecordingInfo) -> list[str]:
    """What the loader's checks say of the whole recording (a truncated WAV, narrowband
    audio), as every other door says them of a clip."""
    found = []
    if isinstance(info.path, Path) and (cut := audio_checks.truncation(info.path)):
        found.append(cut.warning())
    if narrow := audio_checks.narrowband_warning(info.sample_rate_hz, DEFAULT_SAMPLE_RATE_HZ):
        found.append(narrow)
    return found


def _pooled(table: pd.DataFrame, labels: list[str], stats: dict[str, dict]) -> dict[str, Any]:
    """Channels together: time shares of all segments; transitions and longest runs
    within each channel (a change from one speaker to the other is not a transition)."""
    out = summarize(table, labels)
    pairs: dict[tuple[str, str], int] = {}
    runs: dict[str, dict[str, Any]] = {}
    for name, part in stats.items():
        for pair in part["transitions"]["pairs"]:
            key = (pair["from"], pair["to"])
            pairs[key] = pairs.get(key, 0) + pair["count"]
        for label, run in part["longest_runs"].items():
            if label not in runs or run["duration_s"] > runs[label]["duration_s"]:
                runs[label] = {**run, "channel": name}
    out["transitions"] = {
        "count": sum(pairs.values()),
        "pairs": [
            {"from": a, "to": b, "count": n}
            for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }
    out["longest_runs"] = runs
    return out


def _scan(
    path: RecordingSource,
    channel: int | None,
    settings: SegmentSettings,
    asr: Any,
    bar: PassBar,
) -> tuple[list[Segment], list[Word] | None]:
    scanner = VadScanner()
    stream = None
    if asr is not None:
        from emofuse.timeline.asr_words import VoskWordStream

        stream = VoskWordStream(asr, ANALYSIS_RATE_HZ)
    read_s = 0.0
    for block in iter_blocks(path, channel=channel, block_s=settings.block_s):
        scanner.feed(block)
        if stream is not None:
            stream.feed(block)
        read_s += len(block) / ANALYSIS_RATE_HZ
        bar.reach(read_s)
    segments = find_segments(scanner.finish(), settings)
    return segments, stream.finish() if stream is not None else None


def _batches(items: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict(
    bundle: Any,
    path: RecordingSource,
    channel: int | None,
    segments: list[Segment],
    texts: list[str | None],
    settings: SegmentSettings,
    batch_size: int,
    bar: PassBar,
    scorer: SegmentScorer,
    min_confidence: float | None = None,
) -> pd.DataFrame:
    labels = list(bundle.labels)
    spans = [(s.start_s, s.end_s) for s in segments]
    blocks = iter_blocks(path, channel=channel, block_s=settings.block_s)
    rows: list[dict[str, Any]] = []
    row_of = {"min_confidence": min_confidence, "speaker_clips": adapts_to_speakers(bundle)}

    def add_rows(scored: list[tuple[int, Any]]) -> None:
        for i, prediction in scored:
            row = {"start_s": segments[i].start_s, "end_s": segments[i].end_s}
            row.update(prediction_row(prediction, labels, SEGMENT_ROW, **row_of))
            if texts[i] is not None:  # the words as given, not as the encoder read them
                row["text"] = texts[i]
            rows.append(_with_warnings(row, segments[i].warnings(settings)))

    for batch in _batches(iter_spans(blocks, spans), batch_size):
        batch = [(i, wave) for i, wave in batch if len(wave)]
        if not batch:
            continue
        given = [texts[i] if texts[i] else None for i, _ in batch]
        add_rows(
            scorer.add([i for i, _ in batch], [(w, ANALYSIS_RATE_HZ) for _, w in batch], given)
        )
        bar.reach(segments[batch[-1][0]].end_s)
    add_rows(scorer.finish())  # adapted to the whole channel: scored once it is read
    return pd.DataFrame(rows) if rows else _empty_table(labels)


def _with_warnings(row: dict[str, Any], segment_warnings: list[str]) -> dict[str, Any]:
    """``row`` with its ``warnings`` column right after ``text`` (empty when none): the
    segment's own (:meth:`Segment.warnings`), then those of its prediction."""
    found = "; ".join([*segment_warnings, *filter(None, [row.get("warnings")])])
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key != "warnings":
            out[key] = value
        if key == "text":
            out["warnings"] = found
    out.setdefault("warnings", found)
    return out


def _empty_table(labels: Sequence[str]) -> pd.DataFrame:
    columns = [
        "start_s", "end_s", "label", "confidence", *[f"p_{x}" for x in labels], "text", "warnings",
    ]  # fmt: skip
    return pd.DataFrame(
        {
            c: pd.Series(dtype="object" if c in ("label", "text", "warnings") else float)
            for c in columns
        }
    )
