"""The pretrained GE2E voice encoder shipped inside the ``resemblyzer`` wheel: 256 values.

What resemblyzer's ``preprocess_wav`` does, and what this module does instead:

- it raises quiet audio to -30 dBFS RMS (never lowers it) and then cuts silences longer
  than ~0.2 s with webrtcvad (mode 3). On digital silence the gain is infinite and the
  waveform turns to NaN; on a clip in which the VAD finds no voice (noise, very short
  clips) it returns an *empty* waveform.
- here the same two steps run (resemblyzer's own functions, same parameters), except:
  silence gets no gain (a clip that never reaches -80 dBFS counts as silence, see
  :mod:`emofuse.audio_checks`: a 1e-30 float clip would otherwise get an infinite
  gain); samples pushed past full scale by the gain are clipped (resemblyzer would wrap
  them around in the VAD's int16 copy); and when the VAD keeps less than
  :data:`MIN_VOICED_S` the untrimmed (gain-adjusted) clip is used instead. So
  every clip, silent or 10 ms long, gets a finite unit-length vector.

The utterance vector is resemblyzer's ``embed_utterance``: 1.6 s partial windows at 1.3
per second, each embedded, averaged, L2-normalised. Partials of a whole batch go through
the network together (same numbers as clip by clip, several times faster on CPU).

The model loads once per process (lazily) and is shared by every encoder instance. Its
config carries the sha256 of the weights file, so a different wheel is a new fingerprint.
``encode`` sets torch's (process-wide) thread count to ``threads`` (default 1) for its
duration and restores it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import sys
import threading
import types
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.audio_checks import quiet_as_silence
from emofuse.encoders.base import Encoder, EncoderError
from emofuse.encoders.options import check_options, parse_bool, parse_int
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ, SPEECH

DIM = 256
#: A VAD-trimmed clip shorter than this falls back to the untrimmed clip.
MIN_VOICED_S = 0.3
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
#: Partial windows per forward pass (bounds memory for very long clips).
FORWARD_BATCH = 256
#: Torch threads while encoding, unless ``?threads=N`` says otherwise. One: this small
#: LSTM gains little from more, and on a busy machine (other jobs, openSMILE, a second
#: encoder) OpenMP threads that wait on each other made a batch 5-10x *slower*.
DEFAULT_THREADS = 1

_lock = threading.Lock()


def import_resemblyzer() -> types.ModuleType:
    """Import resemblyzer even where setuptools no longer ships ``pkg_resources``.

    resemblyzer imports ``webrtcvad``, whose only use of ``pkg_resources`` is to read its
    own version at import time; a stand-in is put in place for that one import and removed.
    """
    try:
        import webrtcvad  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "pkg_resources":
            raise EncoderError(f"resemblyzer: cannot import webrtcvad ({error})") from error
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name)
        )
        sys.modules["pkg_resources"] = shim
        try:
            import webrtcvad  # noqa: F401
        finally:
            del sys.modules["pkg_resources"]
    try:
        with warnings.catch_warnings():
            # resemblyzer imports scipy.ndimage.morphology (deprecated namespace).
            warnings.simplefilter("ignore", DeprecationWarning)
            import resemblyzer
    except ImportError as error:
        raise EncoderError(f"resemblyzer is not installed or broken: {error}") from error
    return resemblyzer


@lru_cache(maxsize=1)
def weights_sha256() -> str:
    """sha256 of the ``pretrained.pt`` inside the installed resemblyzer (read once)."""
    path = Path(import_resemblyzer().__file__).resolve().parent / "pretrained.pt"
    if not path.is_file():
        raise EncoderError(f"resemblyzer: weights file {path} is missing (reinstall resemblyzer)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def shared_model() -> Any:
    """The one ``resemblyzer.VoiceEncoder`` of this process, on CPU, in eval mode."""
    resemblyzer = import_resemblyzer()
    model = resemblyzer.VoiceEncoder("cpu", verbose=False)
    model.eval()
    return model


def preprocess(wave: np.ndarray, *, trim_silence: bool = True) -> np.ndarray:
    """resemblyzer's ``preprocess_wav`` for a 16 kHz wave, made safe (see module docstring)."""
    from resemblyzer.audio import normalize_volume, trim_long_silences
    from resemblyzer.hparams import audio_norm_target_dBFS

    # A float clip at 1e-30 is not all zeros, but its mean square underflows to 0 and the
    # gain below would be infinite: it is encoded as the silence it is.
    wave = quiet_as_silence(wave)
    if len(wave) and np.any(wave):
        wave = normalize_volume(wave, audio_norm_target_dBFS, increase_only=True)
        wave = np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)
    if not trim_silence or len(wave) < MIN_VOICED_S * DEFAULT_SAMPLE_RATE_HZ:
        return wave
    trimmed = trim_long_silences(wave)
    return wave if len(trimmed) < MIN_VOICED_S * DEFAULT_SAMPLE_RATE_HZ else trimmed


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class VoiceEncoderEmbedding(Encoder):
    """GE2E speaker-verification embedding; carries voice quality and some prosody."""

    modality = SPEECH
    name = "resemblyzer"
    sample_rate_hz = DEFAULT_SAMPLE_RATE_HZ

    def __init__(self, *, trim_silence: bool = True, threads: int = DEFAULT_THREADS):
        import_resemblyzer()
        self.trim_silence = trim_silence
        self.threads = threads

    @property
    def spec(self) -> str:
        return "resemblyzer" if self.trim_silence else "resemblyzer?trim_silence=0"

    @property
    def dim(self) -> int:
        return DIM

    def config(self) -> dict[str, Any]:
        return {
            "resemblyzer": importlib.metadata.version("resemblyzer"),
            "weights_sha256": weights_sha256(),
            "sample_rate_hz": self.sample_rate_hz,
            "trim_silence": self.trim_silence,
            "min_voiced_s": MIN_VOICED_S,
            "partials_per_s": PARTIALS_PER_S,
            "min_coverage": MIN_COVERAGE,
        }

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        model = shared_model()
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, wave in enumerate(batch):
            wave = np.asarray(wave)
            if wave.ndim != 1:
                raise EncoderError(
                    f"resemblyzer: expected a mono 1-D waveform, got shape {wave.shape}"
                )
            wave = preprocess(wave, trim_silence=self.trim_silence)
            # As resemblyzer's embed_utterance: pad to cover the last partial window.
            wav_slices, mel_slices = model.compute_partial_slices(
                len(wave), PARTIALS_PER_S, MIN_COVERAGE
            )
            if wav_slices[-1].stop >= len(wave):
                wave = np.pad(wave, (0, wav_slices[-1].stop - len(wave)))
            mel = wav_to_mel_spectrogram(wave)
            windows.extend(mel[s] for s in mel_slices)
            owner.extend([i] * len(mel_slices))
        if not windows:
            return np.zeros((0, DIM), dtype=np.float32)

        partials = np.empty((len(windows), DIM), dtype=np.float32)
        with _lock, torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(windows), FORWARD_BATCH):
                mels = torch.from_numpy(np.stack(windows[start : start + FORWARD_BATCH]))
                partials[start : start + len(mels)] = model(mels).numpy()

        owners = np.asarray(owner)
        out = np.zeros((len(batch), DIM), dtype=np.float32)
        np.add.at(out, owners, partials)
        out /= np.bincount(owners, minlength=len(batch))[:, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def build(options: dict[str, str]) -> VoiceEncoderEmbedding:
    """Registry factory: ``resemblyzer?trim_silence=0&threads=2``."""
    check_options(options, ("trim_silence", "threads"), "resemblyzer")
    return VoiceEncoderEmbedding(
        trim_silence=parse_bool(options.get("trim_silence", True), name="resemblyzer trim_silence"),
        threads=parse_int(
            options.get("threads", DEFAULT_THREADS), name="resemblyzer threads", minimum=1
        ),
    )
