"""Speech probability and loudness per 32 ms frame, with the Silero voice-activity detector.

The model (TorchScript, inside the ``silero-vad`` wheel) is fed one block at a time and
keeps its state from block to block, so the scores do not depend on the block size and
memory never holds more than a block. Each scanner has its own model (its state is the
scan's), loaded in about 0.1 s.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from emofuse.timeline.reader import ANALYSIS_RATE_HZ
from emofuse.torch_threads import one_thread, thread_count_kept

#: Samples per frame the 16 kHz Silero model scores (32 ms).
FRAME_SAMPLES = 512
FRAME_S = FRAME_SAMPLES / ANALYSIS_RATE_HZ


def load_vad_model() -> Any:
    """A fresh Silero model.

    Importing ``silero_vad`` sets torch to one thread for the whole process; the caller's
    thread count is put back so the speech encoders keep their cores.
    """
    with thread_count_kept():
        from silero_vad import load_silero_vad

        with warnings.catch_warnings():  # its loader uses APIs that Python and torch deprecate
            warnings.simplefilter("ignore", DeprecationWarning)
            return load_silero_vad()


@dataclass
class FrameScores:
    """Per frame: speech probability (0..1) and loudness (RMS, dBFS)."""

    speech_prob: np.ndarray
    level_db: np.ndarray
    duration_s: float


class VadScanner:
    """Feed blocks with :meth:`feed`; :meth:`finish` gives the :class:`FrameScores`."""

    def __init__(self) -> None:
        self.model = load_vad_model()
        self.model.reset_states()
        self._rest = np.zeros(0, dtype=np.float32)  # samples not yet a whole frame
        self._probs: list[np.ndarray] = []
        self._levels: list[np.ndarray] = []
        self._samples = 0

    def feed(self, block: np.ndarray) -> None:
        self._samples += len(block)
        wave = np.concatenate([self._rest, np.asarray(block, dtype=np.float32)])
        whole = len(wave) // FRAME_SAMPLES * FRAME_SAMPLES
        self._rest = wave[whole:].copy()
        if whole:
            self._score(wave[:whole])

    def finish(self) -> FrameScores:
        if len(self._rest):
            padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            padded[: len(self._rest)] = self._rest
            self._score(padded)
            self._rest = np.zeros(0, dtype=np.float32)
        probs = np.concatenate(self._probs) if self._probs else np.zeros(0, dtype=np.float32)
        levels = np.concatenate(self._levels) if self._levels else np.zeros(0, dtype=np.float32)
        return FrameScores(probs, levels, self._samples / ANALYSIS_RATE_HZ)

    def _score(self, frames: np.ndarray) -> None:
        n = len(frames) // FRAME_SAMPLES
        import torch

        x = torch.from_numpy(frames).reshape(n, 1, FRAME_SAMPLES)
        with torch.no_grad(), one_thread():
            probs = torch.cat([self.model(x[i], ANALYSIS_RATE_HZ) for i in range(n)], dim=1)
        self._probs.append(probs[0].numpy().astype(np.float32))
        rms = np.sqrt(np.mean(frames.reshape(n, FRAME_SAMPLES) ** 2, axis=1))
        self._levels.append((20 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32))


def scan(blocks: Iterable[np.ndarray]) -> FrameScores:
    scanner = VadScanner()
    for block in blocks:
        scanner.feed(block)
    return scanner.finish()
