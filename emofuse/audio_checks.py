"""The audio policies every path shares: how long a clip may be, how loud its samples may
be, what counts as a truncated or a narrowband file, and what the encoders do with
(effectively) silent clips.

Length
    :data:`MAX_CLIP_S` is the one length limit of every command (``extract``, training,
    grids, ``predict``, ``evaluate``; ``serve`` may only lower it). It is checked from the
    file header, before any sample is decoded: a longer clip is refused (in the feature
    store, a recorded failure naming the file), so a stray hours-long recording is never
    read into memory.

Loudness
    Full scale is ±1. Integer files cannot exceed it; a float file can hold anything, and
    one whose peak is more than :data:`MAX_PEAK` (+12 dBFS) is a mis-scaled file (integer
    sample values saved as float, a gain applied twice), not a loud recording: it is
    refused (:class:`emofuse.audio.AudioOutOfRange`, naming the file and the peak) on
    every path, since no rescaling can know the level that was meant, and features of a
    clip at 1e6 have nothing to do with the clip's. Up to :data:`MAX_PEAK` samples are
    kept as they are: float files from an editing chain often overshoot a little, and
    clipping them would distort more than it protects.

Truncation
    A file shorter than its header says (a partial copy or download) is *truncated*: for
    WAV the header's data size is compared with the bytes the file holds
    (:func:`truncation`, no decoding); any other format is caught when the decoder gives
    fewer frames than the header promised. Up to :data:`TRUNCATION_TOLERANCE_S` missing
    is header sloppiness (writers that count the header in the data size), not a cut.
    ``prepare`` leaves a truncated clip out (a ``truncated-audio`` problem row),
    ``extract`` records it as a failure, ``predict`` and the service score what is there
    with a ``truncated`` warning.

Narrowband
    A clip recorded below :data:`NARROWBAND_BELOW_HZ` (telephone audio: 8 kHz) has nothing
    above half its rate; upsampled for an encoder that expects 16 kHz, it still has
    nothing there, unlike anything the model was trained on. ``predict`` and the service
    warn (``narrowband``), ``extract`` notes how many such clips it read.

Silence
    The rule is :func:`is_silent` (no sample reaches :data:`SILENCE_PEAK`): the same rule
    decides when ``predict`` warns that a clip is silence and when an encoder treats it as
    silence. Float WAVs can hold samples far below any real signal (1e-30, 1e-38): they
    pass an "is it all zeros?" test, and any loudness normalisation then divides by a mean
    square that underflowed to 0 (resemblyzer's volume normalisation crashed with
    ``librosa.ParameterError``). Every speech encoder passes its waveforms through
    :func:`quiet_as_silence`, so such a clip is encoded exactly as digital silence: one
    defined vector, never a crash, never noise amplified a billionfold.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

#: The longest clip any command reads, in seconds (checked from the header).
MAX_CLIP_S = 600.0
#: The largest sample magnitude accepted (+12 dBFS); above it a file is mis-scaled.
MAX_PEAK = 4.0
#: Clips recorded below the rate the encoders read are narrowband (telephone audio is 8 kHz):
#: upsampling adds no voice above their Nyquist frequency.
NARROWBAND_BELOW_HZ = DEFAULT_SAMPLE_RATE_HZ
#: Less than this missing from a file is header sloppiness, not truncation.
TRUNCATION_TOLERANCE_S = 0.02
#: A clip whose every sample is below this (-80 dBFS) is digital silence (see is_silent).
SILENCE_PEAK = 1e-4
#: The kinds of warning the loader gives (each warning starts with ``"<kind>: "``).
TRUNCATED = "truncated"
NARROWBAND = "narrowband"

#: Chunks walked before the WAV data chunk (LIST, fact, PEAK, bext ... come first).
_MAX_CHUNKS = 64
#: A data size a streaming writer leaves when it never came back to fill the header in.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def is_silent(wave: np.ndarray) -> bool:
    """True for digital silence: no sample reaches :data:`SILENCE_PEAK` (-80 dBFS). Not an
    error (the encoders give it a vector), but a label for it says nothing."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < SILENCE_PEAK


def quiet_as_silence(wave: np.ndarray) -> np.ndarray:
    """``wave`` as float32, or zeros of its length when :func:`is_silent` says it is
    silence, so an encoder treats a 1e-30 clip exactly as digital silence."""
    wave = np.asarray(wave, dtype=np.float32)
    return np.zeros_like(wave) if is_silent(wave) else wave


def peak_problem(samples: np.ndarray) -> str | None:
    """Why ``samples`` are refused by the loudness rule (peak above :data:`MAX_PEAK`), or
    None: "samples reach 1e+06 (+120 dBFS) ..." (the caller puts the file name first)."""
    if samples.size == 0:
        return None
    peak = float(np.max(np.abs(samples)))
    if not peak > MAX_PEAK:  # NaN is the finite-samples check's to report
        return None
    return (
        f"samples reach {peak:.3g} ({20 * np.log10(peak):+.0f} dBFS; full scale is ±1, at "
        f"most {MAX_PEAK:g} is accepted): mis-scaled float audio (integer sample values "
        "stored as float?); scale it to ±1 (16-bit values: divide by 32768)"
    )


def narrowband_warning(source_hz: int, target_hz: int) -> str | None:
    """The ``narrowband`` warning for a clip recorded at ``source_hz`` and upsampled to
    ``target_hz``, or None."""
    if source_hz >= min(NARROWBAND_BELOW_HZ, target_hz):
        return None
    return (
        f"{NARROWBAND}: recorded at {source_hz} Hz (narrowband, e.g. telephone audio: "
        f"nothing above {source_hz / 2000:g} kHz) and upsampled to {target_hz} Hz; unless "
        "the model learnt from such audio, trust this label less"
    )


@dataclass(frozen=True)
class Truncation:
    """A file shorter than its header says: seconds claimed and seconds present."""

    claimed_s: float
    present_s: float

    def describe(self) -> str:
        return (
            f"the header says {self.claimed_s:.2f} s, the file holds {self.present_s:.2f} s "
            "(cut short: a partial copy or download?)"
        )

    def warning(self) -> str:
        return f"{TRUNCATED}: {self.describe()}"


def truncation(source: str | Path | bytes | bytearray | memoryview) -> Truncation | None:
    """The :class:`Truncation` of a WAV file (a path) or WAV bytes, read from the header
    and the size alone, or None: the whole file is there, it is not a RIFF/RIFX WAVE, or
    its header leaves the size open (a streaming writer's 0 or 0xFFFFFFFF). Never raises
    for a bad file (the decoder reports those). About 10 µs a file: the corpus scan runs
    it on every clip."""
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            return _wav_truncation(lambda at, n: data[at : at + n], len(data))
        fd = os.open(source, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, 512, 0)
            return _wav_truncation(
                lambda at, n: head[at : at + n] if at + n <= len(head) else os.pread(fd, n, at),
                size,
            )
        finally:
            os.close(fd)
    except (OSError, ValueError, struct.error):
        return None


def _wav_truncation(read_at: Callable[[int, int], bytes], size: int) -> Truncation | None:
    head = read_at(0, 12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
        return None
    endian = "<" if head[:4] == b"RIFF" else ">"
    position, block_align, rate = 12, 0, 0
    for _ in range(_MAX_CHUNKS):
        header = read_at(position, 24)
        if len(header) < 8:
            return None
        chunk_id = header[:4]
        (chunk_size,) = struct.unpack(endian + "I", header[4:8])
        if chunk_id == b"fmt " and len(header) >= 22:
            _tag, _channels, rate, _bytes_per_s, block_align = struct.unpack(
                endian + "HHIIH", header[8:22]
            )
        elif chunk_id == b"data":
            if not (block_align and rate) or chunk_size in _UNKNOWN_SIZES:
                return None
            present = max(size - position - 8, 0)
            missing_s = (chunk_size - present) / block_align / rate
            if missing_s <= TRUNCATION_TOLERANCE_S:
                return None
            return Truncation(chunk_size // block_align / rate, present // block_align / rate)
        position += 8 + chunk_size + (chunk_size & 1)
        if position >= size:
            return None
    return None
