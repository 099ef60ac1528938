"""What `emofuse predict BUNDLE clip.wav` prints: the label, the clip's name, and for a
`both` bundle the fused, speech-only and text-only distributions and whether the two
single-modality heads agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emofuse.bundle.prediction import Prediction
from emofuse.cli import main
from emofuse.cli.predict import format_prediction


@pytest.fixture(scope="module")
def both_bundle(tmp_path_factory) -> Path:
    from support.toy_bundle import train_toy_bundle

    return train_toy_bundle(tmp_path_factory.mktemp("predict-both"))


def _table(out: str) -> tuple[list[str], dict[str, list[float]]]:
    """The column heads and label -> numbers of the printed distribution table."""
    lines = out.splitlines()
    head_at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["fused"])
    rows = {}
    for line in lines[head_at + 1 :]:
        cells = line.split()
        rows[cells[0]] = [float(c) for c in cells[1:] if re.fullmatch(r"[\d.]+", c)]
    return lines[head_at].split(), rows


def test_a_both_bundle_prints_three_distributions_and_the_clip(both_bundle, tmp_path, capsys):
    from support.toy_bundle import SENTENCES, tone_wav

    from emofuse.bundle import Bundle

    clip = tone_wav(tmp_path / "call-0042.wav", 0.3, 140.0)  # an "angry" tone
    text = SENTENCES["happy"][0]  # ...read with happy words
    argv = ["predict", str(both_bundle), str(clip), "--text", text]
    assert main([*argv, "--plugin", "support.toy_encoders"]) == 0
    out = capsys.readouterr().out
    (expected,) = Bundle.load(both_bundle).predict([str(clip)], [text])

    lines = out.splitlines()
    assert lines[0] == f"label: {expected.label}"
    assert f"clip: {clip}" in lines
    heads, rows = _table(out)
    assert heads == ["fused", "speech-only", "text-only"]
    assert set(rows) == set(expected.probabilities)
    for label, (fused, speech, words) in rows.items():
        assert fused == pytest.approx(expected.probabilities[label], abs=5e-4)
        assert speech == pytest.approx(expected.by_modality["speech"][label], abs=5e-4)
        assert words == pytest.approx(expected.by_modality["text"][label], abs=5e-4)
    fused_order = [rows[label][0] for label in rows]
    assert fused_order == sorted(fused_order, reverse=True)  # most probable first

    speech_top = max(expected.by_modality["speech"], key=expected.by_modality["speech"].get)
    text_top = max(expected.by_modality["text"], key=expected.by_modality["text"].get)
    agree_line = next(line for line in lines if line.startswith("agree: "))
    assert agree_line.startswith("agree: yes" if expected.agree else "agree: no")
    assert speech_top in agree_line and text_top in agree_line


def _both(speech: dict, text: dict, agree: bool) -> Prediction:
    fused = {k: (speech[k] + text[k]) / 2 for k in speech}
    return Prediction(
        label=max(fused, key=fused.get),
        probabilities=fused,
        text="오늘 좋아요",
        by_modality={"speech": speech, "text": text},
        agree=agree,
    )


def test_disagreement_names_what_each_modality_says():
    prediction = _both({"happy": 0.2, "sad": 0.8}, {"happy": 0.9, "sad": 0.1}, agree=False)
    out = format_prediction(prediction, clip="a.wav")
    assert "agree: no (speech-only says sad, text-only says happy)" in out.splitlines()
    assert "clip: a.wav" in out.splitlines() and "text: 오늘 좋아요" in out.splitlines()
    _, rows = _table(out)
    assert rows == {"happy": [0.55, 0.2, 0.9], "sad": [0.45, 0.8, 0.1]}


def test_agreement_names_the_shared_label():
    prediction = _both({"happy": 0.6, "sad": 0.4}, {"happy": 0.7, "sad": 0.3}, agree=True)
    out = format_prediction(prediction)
    assert "agree: yes (speech-only and text-only both say happy)" in out
    assert "clip:" not in out  # a text given alone names no clip


def test_a_single_modality_bundle_prints_one_distribution():
    prediction = Prediction(label="sad", probabilities={"happy": 0.25, "sad": 0.75})
    lines = format_prediction(prediction, clip="b.wav").splitlines()
    assert lines[:2] == ["label: sad", "clip: b.wav"]
    assert not any(line.startswith("agree") or "fused" in line for line in lines)
    assert lines[2].split()[:2] == ["sad", "0.750"] and lines[3].split()[:2] == ["happy", "0.250"]
