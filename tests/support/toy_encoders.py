"""Tiny deterministic encoders for the feature-store tests, registered by name on import.

Subprocess tests load them with ``emofuse extract --plugin toy_encoders`` (with this
directory on PYTHONPATH) or ``EMOFUSE_PLUGINS=toy_encoders``.

Environment knobs (kept out of ``config()`` so they never change a fingerprint):
``TOY_SLEEP_S`` sleeps that long per encode() call (to land a kill mid-run);
``TOY_ENCODE_LOG`` appends one line per encoded item, so a test can count real work.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from emofuse.encoders.base import Encoder, stable_hash
from emofuse.encoders.registry import register_encoder

SAMPLE_RATE_HZ = 16_000


def _side_effects(kind: str, n: int) -> None:
    sleep_s = float(os.environ.get("TOY_SLEEP_S", "0") or 0)
    if sleep_s:
        time.sleep(sleep_s)
    log = os.environ.get("TOY_ENCODE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{kind} {os.getpid()}\n" * n)


def encoded_items(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def save_vocab(directory: str | Path, vocab: list[str]) -> None:
    """Write a fitted character vocabulary as ``vocab.json`` under ``directory``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))


def load_vocab(directory: str | Path) -> list[str]:
    """Read the vocabulary :func:`save_vocab` wrote."""
    return json.loads((Path(directory) / "vocab.json").read_text())


class ToyStats(Encoder):
    """Speech: mean, std, peak, duration and zero-crossing rate of the waveform, scaled.

    ``fail_above_s`` makes encode() raise for longer clips (an item-level encoder error).
    """

    modality = "speech"
    name = "toy-stats"
    sample_rate_hz = SAMPLE_RATE_HZ

    def __init__(self, scale: str = "1", fail_above_s: str = ""):
        self.scale = float(scale)
        self.fail_above_s = float(fail_above_s) if fail_above_s else None

    @property
    def spec(self) -> str:
        options = [f"scale={self.scale:g}"] if self.scale != 1 else []
        if self.fail_above_s is not None:
            options.append(f"fail_above_s={self.fail_above_s:g}")
        return "toy-stats" + ("?" + "&".join(options) if options else "")

    @property
    def dim(self) -> int:
        return 5

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "fail_above_s": self.fail_above_s}

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        _side_effects("speech", len(batch))
        rows = []
        for wave in batch:
            seconds = len(wave) / self.sample_rate_hz
            if self.fail_above_s is not None and seconds > self.fail_above_s:
                raise ValueError(f"toy-stats refuses clips longer than {self.fail_above_s:g} s")
            crossings = np.count_nonzero(np.diff(np.signbit(wave))) / max(len(wave), 1)
            rows.append([wave.mean(), wave.std(), np.abs(wave).max(), seconds, crossings])
        return np.asarray(rows, dtype=np.float32) * self.scale


class ToyChars(Encoder):
    """Text, fitted: character counts over the characters seen in the training texts."""

    modality = "text"
    name = "toy-chars"
    needs_fit = True

    def __init__(self) -> None:
        self.vocab: list[str] | None = None
        self.fit_calls = 0

    @property
    def spec(self) -> str:
        return "toy-chars"

    @property
    def dim(self) -> int:
        return len(self.vocab) + 1 if self.vocab is not None else 0

    @property
    def is_fitted(self) -> bool:
        return self.vocab is not None

    def config(self) -> dict[str, Any]:
        return {"unit": "char"}

    def state_fingerprint(self) -> str:
        return stable_hash(self.vocab) if self.vocab is not None else ""

    def fit(self, texts: Sequence[str]) -> None:
        self.fit_calls += 1
        self.vocab = sorted({c for t in texts for c in t if not c.isspace()})

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        assert self.vocab is not None, "toy-chars is not fitted"
        _side_effects("text", len(batch))
        where = {c: i for i, c in enumerate(self.vocab)}
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for row, text in enumerate(batch):
            for c in text:
                if not c.isspace():
                    out[row, where.get(c, len(self.vocab))] += 1
        return out

    def save_state(self, directory: str | Path) -> None:
        save_vocab(directory, self.vocab)

    def load_state(self, directory: str | Path) -> None:
        self.vocab = load_vocab(directory)


class ToyLength(Encoder):
    """Text, no fitting: length, word count and number of '!' / '?'."""

    modality = "text"
    name = "toy-len"

    @property
    def spec(self) -> str:
        return "toy-len"

    @property
    def dim(self) -> int:
        return 3

    def config(self) -> dict[str, Any]:
        return {}

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        _side_effects("text", len(batch))
        return np.asarray(
            [[len(t), len(t.split()), t.count("!") + t.count("?")] for t in batch],
            dtype=np.float32,
        ).reshape(len(batch), 3)


register_encoder("speech", "toy-stats", lambda options: ToyStats(**options))
register_encoder("text", "toy-chars", lambda options: ToyChars(**options))
register_encoder("text", "toy-len", lambda options: ToyLength(**options))


SCRIPTS = ("오늘 정말 좋아요!", "왜 그랬어요?", "괜찮아요.", "정말  화가 나요")


def make_corpus(directory: Path, n: int = 12, *, speakers: int = 3) -> pd.DataFrame:
    """``n`` short synthetic WAVs (different lengths and pitches) and their utterance table;
    speakers read the same few scripts, and a third of the rows are in part ``test``."""
    import pandas as pd
    import soundfile as sf

    directory = Path(directory)
    (directory / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        seconds = 0.2 + 0.05 * (i % 7)
        t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
        wave = 0.1 * np.sin(2 * np.pi * (150 + 25 * i) * t) + 0.01 * rng.standard_normal(len(t))
        path = directory / "wav" / f"u{i:03d}.wav"
        sf.write(path, wave.astype(np.float32), SAMPLE_RATE_HZ)
        rows.append(
            {
                "id": f"u{i:03d}",
                "audio": str(path),
                "text": SCRIPTS[i % len(SCRIPTS)],
                "label": ("happy", "sad")[i % 2],
                "speaker": f"spk{i % speakers}",
                "script": str(i % len(SCRIPTS)),
                "duration_s": float(seconds),
                "source_split": "",
                "part": "test" if i % 3 == 2 else "train",
            }
        )
    return pd.DataFrame(rows)
