"""Load audio for the speech encoders: read, mix down to mono, resample, float32.

One loader, :func:`load_waveform`, for every way a clip arrives: a file path, uploaded
bytes, or a ``(waveform, sample_rate_hz)`` pair. Each gets the same checks (empty, too
short, too long, non-finite samples), the same mix-down and the same resampling, so a clip
gives the same waveform whichever door it came in by.

Every problem raises a subclass of :class:`AudioError` whose message starts with the file
(or upload) name and says what is wrong; the class says what kind of problem it is (the
service picks its HTTP status from it). All-silent audio is *not* an error: the encoders
give it a defined vector. Samples far beyond full scale are (:class:`AudioOutOfRange`).
What is wrong but still usable (a truncated file, narrowband audio) is not an error
either: pass a list as ``notes`` and the loader appends one warning per finding, each
starting with its kind (``"truncated: ..."``, ``"narrowband: ..."``). The rules are
:mod:`emofuse.audio_checks`'s.

Long clips (``max_duration_s``), one policy per call. How long a clip may be on each path
(one limit, :data:`emofuse.audio_checks.MAX_CLIP_S`) is stated in :mod:`emofuse.audio_checks`;
this module only applies the limit it is given:

- ``"crop"`` (default): keep the first ``max_duration_s`` seconds. The duration comes from
  the file header first, so only the frames kept are ever decoded: a 10-hour file costs
  what its first ``max_duration_s`` seconds cost.
- ``"error"``: refuse the clip with :class:`AudioTooLong` (from the header, before
  decoding), naming the file, its length and the limit, and pointing at `emofuse timeline`.
- ``"chunk"``: return the whole clip; splitting it is the encoder's business.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

# The rules are audio_checks's; SILENCE_PEAK and is_silent are re-exported from here.
from emofuse.audio_checks import SILENCE_PEAK as SILENCE_PEAK
from emofuse.audio_checks import (
    TRUNCATED,
    TRUNCATION_TOLERANCE_S,
    Truncation,
    narrowband_warning,
    peak_problem,
    truncation,
)
from emofuse.audio_checks import is_silent as is_silent

LongPolicy = Literal["crop", "error", "chunk"]
LONG_POLICIES: tuple[str, ...] = ("crop", "error", "chunk")
DEFAULT_MIN_DURATION_S = 0.05
RESAMPLE_QUALITY = "HQ"
#: Lower rates are not audio recordings (a header or array with a wrong rate).
MIN_SAMPLE_RATE_HZ = 1_000
#: More channels than this on the shorter axis of a 2-D array: not a multi-channel clip.
MAX_CHANNELS = 16
#: Starts of the containers libsndfile reads; bytes that start so but do not decode are
#: a corrupt file of a supported format, anything else is a format we do not read.
_KNOWN_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3", b"caff",
                b".snd", b"wvpk", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")  # fmt: skip
_SF_UNRECOGNISED_FORMAT = 1
_SF_UNSUPPORTED_ENCODING = 4

#: What :func:`load_waveform` accepts: a path, uploaded bytes, or (waveform, rate).
AudioSource = str | Path | bytes | tuple[np.ndarray, int]


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


class AudioNotFound(AudioError):
    """No such file (or a directory where a file was expected)."""


class AudioUnreadable(AudioError):
    """Bytes that do not decode: a corrupt file of a format we read."""


class AudioUnsupportedFormat(AudioUnreadable):
    """A format (or encoding) we do not read at all."""


class AudioTooShort(AudioError):
    """Shorter than the minimum duration."""


class AudioEmpty(AudioTooShort):
    """0 bytes, or no frames."""


class AudioTooLong(AudioError):
    """Longer than ``max_duration_s`` under ``long_policy="error"``."""


class AudioInvalidSamples(AudioError):
    """NaN or infinite samples, a bad sample rate, or an array that is not a waveform."""


class AudioOutOfRange(AudioInvalidSamples):
    """Samples far beyond full scale (:data:`emofuse.audio_checks.MAX_PEAK`): a mis-scaled
    float file."""


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """``(duration_s, sample_rate_hz, channels)`` from the file header, decoding nothing."""
    path = _existing_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise _unreadable(path, error, _head_of(path)) from error
    if info.samplerate <= 0:
        raise AudioInvalidSamples(f"{path}: header gives sample rate {info.samplerate} Hz")
    return info.frames / info.samplerate, int(info.samplerate), int(info.channels)


def load_waveform(
    source: AudioSource,
    sample_rate_hz: int,
    *,
    name: str | None = None,
    max_duration_s: float | None = None,
    long_policy: LongPolicy = "crop",
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    notes: list[str] | None = None,
) -> np.ndarray:
    """A float32 mono waveform at ``sample_rate_hz`` from a path, bytes or (waveform, rate).

    ``name`` is used in messages (default: the path, ``"upload"`` or ``"waveform"``). A 2-D
    array may be (samples, channels) or (channels, samples): the shorter axis is taken as
    the channels; a square array, or one with more than :data:`MAX_CHANNELS` on both
    axes, is refused as ambiguous. ``notes``: a list the loader appends its warnings to
    (``truncated``, ``narrowband``).
    """
    if isinstance(source, str | Path):
        return load_audio(
            source, sample_rate_hz, max_duration_s=max_duration_s, long_policy=long_policy,
            min_duration_s=min_duration_s, notes=notes,
        )  # fmt: skip
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_audio_bytes(
            bytes(source), sample_rate_hz, name=name or "upload", max_duration_s=max_duration_s,
            long_policy=long_policy, min_duration_s=min_duration_s, notes=notes,
        )  # fmt: skip
    name = name or "waveform"
    try:
        wave, rate = source
        rate = int(rate)
    except (TypeError, ValueError) as err:
        raise AudioInvalidSamples(
            f"{name}: expected a file path, bytes or a (waveform, sample_rate_hz) pair"
        ) from err
    frames = _frames_by_channels(np.asarray(wave, dtype=np.float32), name)
    _check_rate(rate, name)
    _check_policy(long_policy, sample_rate_hz)
    if len(frames) == 0:
        raise AudioEmpty(f"{name}: empty audio (0 frames)")
    if max_duration_s is not None and len(frames) / rate > max_duration_s:
        if long_policy == "error":
            raise _too_long(name, len(frames) / rate, max_duration_s)
        if long_policy == "crop":
            frames = frames[: math.ceil(max_duration_s * rate)]
    return _finish(frames, rate, name, sample_rate_hz, min_duration_s, notes)


def load_audio(
    path: str | Path,
    sample_rate_hz: int,
    *,
    max_duration_s: float | None = None,
    long_policy: LongPolicy = "crop",
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    notes: list[str] | None = None,
) -> np.ndarray:
    """:func:`load_waveform` for a file (see the module docstring for policies)."""
    path = _existing_file(path)
    if path.stat().st_size == 0:
        raise AudioEmpty(f"{path}: empty file (0 bytes)")
    wave = _decode(
        str(path), str(path), lambda: _head_of(path), sample_rate_hz, max_duration_s,
        long_policy, min_duration_s, notes,
    )  # fmt: skip
    _note_truncation(notes, truncation(path))
    return wave


def decode_audio_bytes(
    data: bytes,
    sample_rate_hz: int,
    *,
    name: str = "upload",
    max_duration_s: float | None = None,
    long_policy: LongPolicy = "crop",
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    notes: list[str] | None = None,
) -> np.ndarray:
    """:func:`load_waveform` for an upload held in memory; ``name`` is used in messages."""
    if not data:
        raise AudioEmpty(f"{name}: empty file (0 bytes)")
    wave = _decode(
        io.BytesIO(data), name, lambda: data[:16], sample_rate_hz, max_duration_s,
        long_policy, min_duration_s, notes,
    )  # fmt: skip
    _note_truncation(notes, truncation(data))
    return wave


def _note_truncation(notes: list[str] | None, found: Truncation | None) -> None:
    """Add the ``truncated`` warning of a WAV header (once: the decoder may have noticed)."""
    if notes is None or found is None or any(n.startswith(TRUNCATED) for n in notes):
        return
    notes.append(found.warning())


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioNotFound(f"{path}: no such file")
    if not path.is_file():
        raise AudioNotFound(f"{path}: not a file")
    return path


def _head_of(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(16)


def _unreadable(name: object, error: Exception, head: bytes) -> AudioUnreadable:
    """Corrupt (a known container that does not decode) or unsupported (anything else),
    decided from libsndfile's error code and the first bytes."""
    # LibsndfileError carries libsndfile's own message without the "Error opening <obj>" prefix.
    text = str(getattr(error, "error_string", "") or error).strip()
    detail = text.splitlines()[0] if text else type(error).__name__
    code = getattr(error, "code", None)
    known = head.startswith(_KNOWN_MAGIC)
    if code == _SF_UNSUPPORTED_ENCODING or (code == _SF_UNRECOGNISED_FORMAT and not known):
        return AudioUnsupportedFormat(
            f"{name}: unreadable audio (unsupported format: {detail}); send WAV, FLAC, OGG or MP3"
        )
    return AudioUnreadable(f"{name}: unreadable audio (corrupt file: {detail})")


def _too_long(name: str, duration_s: float, max_duration_s: float) -> AudioTooLong:
    return AudioTooLong(
        f"{name}: too long ({duration_s:.1f} s > {max_duration_s:g} s maximum); "
        f"for long recordings use `emofuse timeline` (an emotion timeline, any length)"
    )


def _check_policy(long_policy: str, sample_rate_hz: int) -> None:
    if long_policy not in LONG_POLICIES:
        raise ValueError(f"long_policy must be one of {LONG_POLICIES}, not {long_policy!r}")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, not {sample_rate_hz}")


def _check_rate(rate: int, name: str) -> None:
    if rate < MIN_SAMPLE_RATE_HZ:
        raise AudioInvalidSamples(
            f"{name}: sample rate {rate} Hz (below {MIN_SAMPLE_RATE_HZ} Hz, not an audio recording)"
        )


def _frames_by_channels(wave: np.ndarray, name: str) -> np.ndarray:
    """A (frames, channels) view of a 1-D or 2-D array, channels on the shorter axis."""
    if wave.ndim == 1:
        return wave[:, None]
    if wave.ndim != 2:
        raise AudioInvalidSamples(
            f"{name}: expected a mono (n,) or multi-channel 2-D waveform, got shape {wave.shape}"
        )
    rows, cols = wave.shape
    if rows == cols or min(rows, cols) > MAX_CHANNELS:
        raise AudioInvalidSamples(
            f"{name}: cannot tell channels from samples in an array of shape {wave.shape}; "
            "pass (samples,) or (samples, channels)"
        )
    return wave if cols < rows else wave.T


def _decode(
    source: str | io.BytesIO,
    name: str,
    head: Callable[[], bytes],
    sample_rate_hz: int,
    max_duration_s: float | None,
    long_policy: str,
    min_duration_s: float,
    notes: list[str] | None,
) -> np.ndarray:
    """Open ``source`` with libsndfile, decode what the header and the options ask for and
    check it (``head()`` gives its first bytes, to tell a corrupt file from an unsupported
    format when it does not open)."""
    try:
        sound = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise _unreadable(name, error, head()) from error
    with sound:
        _check_policy(long_policy, sample_rate_hz)
        source_hz = sound.samplerate
        _check_rate(source_hz, name)
        if sound.frames == 0:
            raise AudioEmpty(f"{name}: empty audio (0 frames)")
        # Decide from the header how much to decode; a header may overstate what is there
        # (a truncated file), so the checks are repeated on what was actually read.
        frames = sound.frames
        if max_duration_s is not None and frames / source_hz > max_duration_s:
            if long_policy == "error":
                raise _too_long(name, frames / source_hz, max_duration_s)
            if long_policy == "crop":
                frames = math.ceil(max_duration_s * source_hz)
        try:
            data = sound.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioUnreadable(f"{name}: unreadable audio (corrupt file: {error})") from error
        if len(data) == 0:
            raise AudioEmpty(f"{name}: empty audio (no frames could be decoded)")
        if notes is not None and len(data) < frames:  # the decoder found less than promised
            missing = Truncation(frames / source_hz, len(data) / source_hz)
            if missing.claimed_s - missing.present_s > TRUNCATION_TOLERANCE_S:
                notes.append(missing.warning())
        return _finish(data, source_hz, name, sample_rate_hz, min_duration_s, notes)


def _finish(
    frames: np.ndarray,
    source_hz: int,
    name: str,
    sample_rate_hz: int,
    min_duration_s: float,
    notes: list[str] | None = None,
) -> np.ndarray:
    """(frames, channels) at ``source_hz`` -> checked float32 mono at ``sample_rate_hz``:
    the same length, finite-sample and loudness checks for every door."""
    duration_s = len(frames) / source_hz
    if duration_s < min_duration_s:
        raise AudioTooShort(
            f"{name}: too short ({duration_s:.3f} s < {min_duration_s:g} s minimum)"
        )
    wave = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    if not np.isfinite(wave).all():
        raise AudioInvalidSamples(f"{name}: audio contains NaN or infinite samples")
    if problem := peak_problem(frames):
        raise AudioOutOfRange(f"{name}: {problem}")
    if notes is not None and (warning := narrowband_warning(source_hz, sample_rate_hz)):
        notes.append(warning)
    if source_hz != sample_rate_hz:
        wave = soxr.resample(wave, source_hz, sample_rate_hz, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(wave, dtype=np.float32)
