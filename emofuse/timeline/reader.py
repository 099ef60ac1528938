"""Read a recording of any length in blocks: mono (or one channel) float32 at the analysis rate.

Memory is bounded by the block size, not the recording: every consumer (voice-activity
detection, speech recognition, cutting segments out for prediction) sees one block at a
time. Resampling is streamed too, so block boundaries leave no clicks and every pass over
the file gives the same samples at the same positions.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from emofuse import audio_checks
from emofuse.audio import AudioError, _unreadable, audio_info
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

#: The rate of the voice-activity detector, Vosk and the built-in speech encoders.
ANALYSIS_RATE_HZ = DEFAULT_SAMPLE_RATE_HZ
DEFAULT_BLOCK_S = 30.0


@dataclass(frozen=True)
class InMemoryRecording:
    """A recording held in memory (an upload), read like a file but never written to
    disk; ``name`` stands for it in messages."""

    data: bytes = field(repr=False)
    name: str = "upload"

    def __str__(self) -> str:
        return self.name

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)  # shares the bytes, no copy


#: What the reader reads: a file, or a recording in memory.
RecordingSource = str | Path | InMemoryRecording


@dataclass(frozen=True)
class RecordingInfo:
    path: Path | InMemoryRecording
    duration_s: float
    sample_rate_hz: int
    channels: int


def recording_info(path: RecordingSource) -> RecordingInfo:
    """The header of ``path`` (an :class:`AudioError` naming the file if it is unreadable)."""
    if isinstance(path, InMemoryRecording):
        return _memory_info(path)
    path = Path(path)
    duration_s, rate, channels = audio_info(path)
    if path.stat().st_size == 0 or duration_s <= 0:
        raise AudioError(f"{path}: empty audio (0 frames)")
    return RecordingInfo(path, duration_s, rate, channels)


def _memory_info(recording: InMemoryRecording) -> RecordingInfo:
    if not recording.data:
        raise AudioError(f"{recording}: empty audio (0 bytes)")
    try:
        info = sf.info(recording.open())
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise _unreadable(recording, error, recording.data[:16]) from error
    if info.samplerate <= 0 or info.frames <= 0:
        raise AudioError(f"{recording}: empty audio (0 frames)")
    rate = int(info.samplerate)
    return RecordingInfo(recording, info.frames / rate, rate, int(info.channels))


def _open(source: Path | InMemoryRecording) -> sf.SoundFile:
    return sf.SoundFile(source.open() if isinstance(source, InMemoryRecording) else str(source))


def iter_blocks(
    path: RecordingSource,
    *,
    channel: int | None = None,
    block_s: float = DEFAULT_BLOCK_S,
    sample_rate_hz: int = ANALYSIS_RATE_HZ,
) -> Iterator[np.ndarray]:
    """Consecutive float32 blocks of ``path`` at ``sample_rate_hz``.

    ``channel=None`` mixes all channels down; an index keeps that channel alone. No call
    asks soundfile for more than ``block_s`` seconds of frames.
    """
    info = recording_info(path)
    if channel is not None and not 0 <= channel < info.channels:
        raise AudioError(f"{info.path}: has {info.channels} channel(s), no channel {channel}")
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, not {block_s}")
    frames = max(1, round(block_s * info.sample_rate_hz))
    stream = (
        soxr.ResampleStream(info.sample_rate_hz, sample_rate_hz, 1, dtype="float32", quality="HQ")
        if info.sample_rate_hz != sample_rate_hz
        else None
    )
    try:
        sound = _open(info.path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"{info.path}: unreadable audio ({error})") from error
    with sound:
        while True:
            try:
                data = sound.read(frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"{info.path}: unreadable audio ({error})") from error
            last = len(data) < frames
            wave = data.mean(axis=1) if channel is None else data[:, channel]
            if not np.isfinite(wave).all():
                raise AudioError(f"{info.path}: audio contains NaN or infinite samples")
            if problem := audio_checks.peak_problem(data):  # the loudness rule of every door
                raise AudioError(f"{info.path}: {problem}")
            if stream is not None:
                wave = stream.resample_chunk(np.ascontiguousarray(wave), last=last)
            if len(wave):
                yield np.ascontiguousarray(wave, dtype=np.float32)
            if last:
                return


def iter_spans(
    blocks: Iterator[np.ndarray],
    spans: Sequence[tuple[float, float]],
    sample_rate_hz: int = ANALYSIS_RATE_HZ,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, waveform)`` for each ``(start_s, end_s)`` span (sorted, non-overlapping),
    cut out of a stream of blocks; holds only the audio of the span being filled."""
    bounds = [(round(a * sample_rate_hz), round(b * sample_rate_hz)) for a, b in spans]
    position = 0  # sample index of the first sample of the current block
    current: list[np.ndarray] = []
    index = 0
    for block in blocks:
        end_of_block = position + len(block)
        while index < len(bounds):
            start, end = bounds[index]
            if start >= end_of_block:
                break
            piece = block[max(start - position, 0) : max(min(end - position, len(block)), 0)]
            if len(piece):
                current.append(piece.copy())
            if end > end_of_block:
                break
            yield index, _joined(current)
            current, index = [], index + 1
        position = end_of_block
    while index < len(bounds):  # the file ended early (a header that overstated its length)
        yield index, _joined(current)
        current, index = [], index + 1


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
