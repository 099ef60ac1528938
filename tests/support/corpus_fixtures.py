"""Builders for small corpora on disk, in the layouts the readers accept, with real WAVs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE_HZ = 16000
EMOTION_FOLDERS = {
    "happy": "1.기쁨",
    "sad": "2.슬픔",
    "angry": "3.분노",
    "anxious": "4.불안",
    "hurt": "5.상처",
    "embarrassed": "6.당황",
    "neutral": "7.중립",
}
KOREAN = {"happy": "기쁨", "sad": "슬픔", "angry": "분노", "anxious": "불안", "hurt": "상처",
          "embarrassed": "당황", "neutral": "중립"}  # fmt: skip


def write_tone(path: Path, duration_s: float, *, frequency_hz: float = 220.0) -> Path:
    """A sine tone of exactly round(duration_s * 16000) samples, 16-bit PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(duration_s * SAMPLE_RATE_HZ))
    t = np.arange(n) / SAMPLE_RATE_HZ
    sf.write(path, 0.3 * np.sin(2 * np.pi * frequency_hz * t), SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def label_json(filename: str, text: str | None, emotion: str | None) -> dict:
    """A dataset-466 label file (the fields of docs/design.md)."""
    obj: dict = {
        "파일정보": {"FileName": filename, "SampleRate": SAMPLE_RATE_HZ},
        "화자정보": {"SpeakerName": "X", "Gender": "F"},
    }
    if text is not None:
        obj["전사정보"] = {"OrgLabelText": text, "TransLabelText": text}
    if emotion is not None:
        obj["화자정보"]["Emotion"] = emotion
    return obj


@dataclass
class Clip:
    """One clip of a dataset-466 tree."""

    split: str  # "Training" / "Validation"
    label: str  # canonical English label
    speaker_folder: str  # e.g. "0001_G1A3E1S0C0_ABC"
    number: int  # script number
    duration_s: float
    text: str

    @property
    def stem(self) -> str:
        return f"{self.speaker_folder}_{self.number:06d}"

    def relative(self) -> Path:
        return Path("1.감정", EMOTION_FOLDERS[self.label], self.speaker_folder, self.stem)


def build_aihub466(root: Path, clips: list[Clip]) -> dict[str, tuple[Path, Path]]:
    """Write the clips in the released layout; returns stem -> (wav, json)."""
    out = {}
    for clip in clips:
        rel = clip.relative()
        wav = write_tone(
            root / clip.split / "원천데이터" / rel.with_suffix(".wav"), clip.duration_s
        )
        js = write_json(
            root / clip.split / "라벨링데이터" / rel.with_suffix(".json"),
            label_json(f"{clip.stem}.wav", clip.text, KOREAN[clip.label]),
        )
        out[f"{clip.split}/{clip.stem}"] = (wav, js)
    return out


SENTENCES = ["오늘 정말 기분이 좋아요.", "왜 이렇게 늦었어?", "괜찮아, 다 잘 될 거야."]


def standard_clips() -> list[Clip]:
    """12 good clips: 2 splits, 3 emotions, 2 speakers, 3 scripts, distinct durations."""
    clips = []
    speakers = ["0001_G1A3E1S0C0_ABC", "0002_G2A2E1S1C0_KDH"]
    k = 0
    for split in ("Training", "Validation"):
        for speaker in speakers:
            for label in ("happy", "sad", "angry"):
                number = 1 + (k % 3)
                clips.append(
                    Clip(split, label, speaker, number, 0.25 + 0.05 * k, SENTENCES[number - 1])
                )
                k += 1
    return clips


def build_flat(root: Path, specs: list[tuple[str, float, dict]]) -> dict[str, tuple[Path, Path]]:
    """Flat variant: (relative stem like 'PSB_00001', duration, json object) each."""
    out = {}
    for rel, duration, obj in specs:
        wav = write_tone(root / f"{rel}.wav", duration)
        js = write_json(root / f"{rel}.json", obj)
        out[rel] = (wav, js)
    return out
