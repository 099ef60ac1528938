"""Words with times from Vosk over a whole recording, fed block by block.

Kept beside :mod:`emofuse.asr` (which gives one string per clip) so that file stays as it
is; this reuses its model loading, PCM conversion and install hint.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from emofuse.asr import VOSK_SAMPLE_RATE_HZ, VoskTranscriber, import_vosk, to_pcm16
from emofuse.timeline.transcript import Word


class VoskWordStream:
    """Feed blocks at ``sample_rate_hz`` with :meth:`feed`; :meth:`finish` gives the words."""

    def __init__(self, transcriber: VoskTranscriber | Any, sample_rate_hz: int):
        if not isinstance(transcriber, VoskTranscriber):
            raise TypeError(
                f"word timestamps need a Vosk recogniser, not {type(transcriber).__name__}"
            )
        vosk = import_vosk()
        self.sample_rate_hz = sample_rate_hz
        self._recognizer = vosk.KaldiRecognizer(transcriber.model, VOSK_SAMPLE_RATE_HZ)
        self._recognizer.SetWords(True)
        self.words: list[Word] = []

    def feed(self, block: np.ndarray) -> None:
        if len(block) == 0:
            return
        pcm = to_pcm16(block, self.sample_rate_hz)
        step = 2 * VOSK_SAMPLE_RATE_HZ
        for start in range(0, len(pcm), step):
            if self._recognizer.AcceptWaveform(pcm[start : start + step]):
                self._collect(self._recognizer.Result())

    def finish(self) -> list[Word]:
        self._collect(self._recognizer.FinalResult())
        return self.words

    def _collect(self, result: str) -> None:
        for item in json.loads(result).get("result", []):
            text = str(item.get("word", "")).strip()
            if text:
                self.words.append(Word(float(item["start"]), float(item["end"]), text))
