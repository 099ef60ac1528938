"""Load audio for the speech encoders: read, mix down to mono, resample, float32.

Every problem raises :class:`AudioError` whose message starts with the file (or upload)
name and says what is wrong: missing file, unreadable / corrupt / unsupported format,
empty (0 frames), too short, too long (``long_policy="error"``), non-finite samples.
All-silent audio is *not* an error: the encoders give it a defined vector.

Long clips (``max_duration_s``), one policy per call:

- ``"crop"`` (default): keep the first ``max_duration_s`` seconds. The duration comes from
  the file header first, so only the frames kept are ever decoded: a 10-hour file costs
  what its first ``max_duration_s`` seconds cost.
- ``"error"``: refuse the clip with an :class:`AudioError`.
- ``"chunk"``: return the whole clip; splitting it is the encoder's business (see
  :func:`split_into_chunks` for encoders that average per-chunk vectors).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

LongPolicy = Literal["crop", "error", "chunk"]
LONG_POLICIES: tuple[str, ...] = ("crop", "error", "chunk")
DEFAULT_MIN_DURATION_S = 0.05
RESAMPLE_QUALITY = "HQ"


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """``(duration_s, sample_rate_hz, channels)`` from the file header, decoding nothing."""
    path = _existing_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(_unreadable(path, error)) from error
    if info.samplerate <= 0:
        raise AudioError(f"{path}: header gives sample rate {info.samplerate} Hz")
    return info.frames / info.samplerate, int(info.samplerate), int(info.channels)


def load_audio(
    path: str | Path,
    sample_rate_hz: int,
    *,
    max_duration_s: float | None = None,
    long_policy: LongPolicy = "crop",
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
) -> np.ndarray:
    """A float32 mono waveform at ``sample_rate_hz`` (see the module docstring for policies)."""
    path = _existing_file(path)
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        sound = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(_unreadable(path, error)) from error
    with sound:
        return _read(sound, str(path), sample_rate_hz, max_duration_s, long_policy, min_duration_s)


def decode_audio_bytes(
    data: bytes,
    sample_rate_hz: int,
    *,
    name: str = "upload",
    max_duration_s: float | None = None,
    long_policy: LongPolicy = "crop",
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
) -> np.ndarray:
    """:func:`load_audio` for an upload held in memory; ``name`` is used in messages."""
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    try:
        sound = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(_unreadable(name, error)) from error
    with sound:
        return _read(sound, name, sample_rate_hz, max_duration_s, long_policy, min_duration_s)


def split_into_chunks(
    wave: np.ndarray, sample_rate_hz: int, chunk_s: float, *, min_last_s: float = 1.0
) -> list[np.ndarray]:
    """Consecutive ``chunk_s`` pieces of ``wave`` (views, no copies).

    A tail shorter than ``min_last_s`` joins the chunk before it (so no chunk is a tiny
    scrap that would dominate an average); a wave no longer than ``chunk_s`` is one chunk.
    """
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be positive, not {chunk_s}")
    size = max(1, round(chunk_s * sample_rate_hz))
    if len(wave) <= size:
        return [wave]
    starts = list(range(0, len(wave), size))
    if len(starts) > 1 and len(wave) - starts[-1] < min_last_s * sample_rate_hz:
        starts.pop()
    ends = starts[1:] + [len(wave)]
    return [wave[a:b] for a, b in zip(starts, ends, strict=True)]


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    return path


def _unreadable(name: object, error: Exception) -> str:
    # LibsndfileError carries libsndfile's own message without the "Error opening <obj>" prefix.
    text = str(getattr(error, "error_string", "") or error).strip()
    detail = text.splitlines()[0] if text else type(error).__name__
    return f"{name}: unreadable audio (corrupt or unsupported format: {detail})"


def _read(
    sound: sf.SoundFile,
    name: str,
    sample_rate_hz: int,
    max_duration_s: float | None,
    long_policy: str,
    min_duration_s: float,
) -> np.ndarray:
    if long_policy not in LONG_POLICIES:
        raise ValueError(f"long_policy must be one of {LONG_POLICIES}, not {long_policy!r}")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, not {sample_rate_hz}")
    source_hz = sound.samplerate
    if source_hz <= 0:
        raise AudioError(f"{name}: header gives sample rate {source_hz} Hz")
    if sound.frames == 0:
        raise AudioError(f"{name}: empty audio (0 frames)")

    # Decide from the header how much to decode; a header may overstate what is there
    # (a truncated file), so the checks are repeated on what was actually read.
    frames = sound.frames
    if max_duration_s is not None and frames / source_hz > max_duration_s:
        if long_policy == "error":
            raise AudioError(
                f"{name}: too long ({frames / source_hz:.1f} s > {max_duration_s:g} s maximum)"
            )
        if long_policy == "crop":
            frames = math.ceil(max_duration_s * source_hz)
    try:
        data = sound.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(_unreadable(name, error)) from error
    if len(data) == 0:
        raise AudioError(f"{name}: empty audio (no frames could be decoded)")
    duration_s = len(data) / source_hz
    if duration_s < min_duration_s:
        raise AudioError(f"{name}: too short ({duration_s:.3f} s < {min_duration_s:g} s minimum)")

    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if source_hz != sample_rate_hz:
        wave = soxr.resample(wave, source_hz, sample_rate_hz, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(wave, dtype=np.float32)
