"""Vosk word timestamps over a whole recording give each segment its words."""

from __future__ import annotations

import subprocess

import pytest
from support.requirements import need_espeak, need_vosk

from emofuse.bundle import Prediction
from emofuse.timeline import build_timeline
from emofuse.timeline.compose import compose_recording

need_vosk()


class FixedBundle:
    """A speech model that always says 'calm' (the words are what is tested here)."""

    labels = ["calm", "tense"]
    needs_text = False

    def predict(self, audio, texts=None, **kwargs):
        return [Prediction("calm", {"calm": 0.9, "tense": 0.1}) for _ in audio]


@pytest.mark.slow
def test_recognised_words_fall_in_the_segments_they_were_said_in(tmp_path):
    need_espeak()
    clips = []
    for i, text in enumerate(("오늘 정말 기분이 좋아요", "내일은 비가 온다고 했어요")):
        path = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(path), text], check=True)
        clips.append(path)
    recording = tmp_path / "two.wav"
    truth = compose_recording(clips, ["a", "b"], recording, gap_s=(1.5, 2.0), seed=0)
    timeline = build_timeline(FixedBundle(), recording, asr="vosk", progress=False)
    assert len(timeline.table) == 2
    assert all(len(text.split()) >= 2 for text in timeline.table.text)
    assert timeline.summary["text_from"] == "vosk"
    assert timeline.summary["words_outside_segments"] == 0
    for row, clip in zip(timeline.table.itertuples(), truth.itertuples(), strict=True):
        assert row.start_s < clip.end_s and clip.start_s < row.end_s
