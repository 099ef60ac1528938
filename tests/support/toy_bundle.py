"""A fused (speech + text) bundle trained in a second on synthetic tones with the toy
encoders, for service tests that need a real bundle but not real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-chars

LABELS = ("angry", "happy", "sad")
SENTENCES = {
    "angry": ("stop that now", "i said no"),
    "happy": ("what a lovely day", "this is great"),
    "sad": ("i miss them", "it is over"),
}
SAMPLE_RATE_HZ = 16_000


def tone_wav(path: Path, seconds: float, freq_hz: float, seed: int = 0) -> Path:
    t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
    noise = np.random.default_rng(seed).standard_normal(len(t))
    wave = 0.2 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * noise
    sf.write(path, wave.astype(np.float32), SAMPLE_RATE_HZ)
    return path


def corpus_row(
    uid: str, path: Path, text: str, label: str, speaker: int, script: str, seconds: float, **extra
) -> dict:
    """One corpus-table row for a synthetic clip; ``extra`` adds columns (e.g. ``part``)."""
    return {
        "id": uid,
        "audio": str(path),
        "text": text,
        "label": label,
        "speaker": f"spk{speaker}",
        "script": script,
        "duration_s": seconds,
        "source_split": "",
        **extra,
    }


def toy_table(directory: Path) -> pd.DataFrame:
    rows = []
    (directory / "wav").mkdir(parents=True, exist_ok=True)
    for li, label in enumerate(LABELS):
        for si, text in enumerate(SENTENCES[label]):
            for speaker in range(4):
                seconds = 0.2 + 0.05 * si + 0.02 * speaker
                uid = f"s{speaker}_{label}_{si}"
                path = tone_wav(
                    directory / "wav" / f"{uid}.wav", seconds, 140 + 90 * li + 10 * speaker, li
                )
                part = ("train", "train", "val", "test")[speaker]
                rows.append(
                    corpus_row(uid, path, text, label, speaker, f"{li}{si}", seconds, part=part)
                )
    return pd.DataFrame(rows)


def train_toy_bundle(directory: Path) -> Path:
    """Train and write the bundle under ``directory``; return the bundle folder."""
    from emofuse.head.train import TrainConfig
    from emofuse.pipeline import train_and_evaluate

    directory.mkdir(parents=True, exist_ok=True)
    train_and_evaluate(
        toy_table(directory),
        list(LABELS),
        modality="both",
        speech="toy-stats",
        text="toy-chars",
        store=directory / "features",
        config=TrainConfig(epochs=3, hidden=16, batch_size=8, seed=0),
        out_dir=directory / "bundle",
        progress=False,
    )
    return directory / "bundle"
