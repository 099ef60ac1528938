"""The timeline with a bundle that adapts to speakers: each channel is one speaker, its
segments normalised by the statistics of the whole channel (`--adapt whole`) or of the
segments up to each one (`--adapt causal`, for live use); segments.csv says how many
segments that was (`speaker_clips`).

Speech comes from espeak-ng, as in tests/test_timeline_run.py; the bundle uses the toy
encoders and learns loud from soft speech."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats
from support.requirements import need_espeak

from emofuse.audio import load_audio
from emofuse.bundle import Bundle, save_bundle
from emofuse.cli import main
from emofuse.encoders import build_encoder
from emofuse.head.speaker_norm import SpeakerNorm
from emofuse.head.train import TrainConfig, fit_head
from emofuse.timeline import SegmentSettings, TimelineError, build_timeline
from emofuse.timeline.compose import compose_recording
from emofuse.timeline.reader import ANALYSIS_RATE_HZ, iter_blocks, iter_spans

RATE = 16_000
SENTENCES = ("오늘 정말 기분이 좋아요", "왜 그랬는지 모르겠어요", "내일은 비가 온다고 했어요",
             "회의가 생각보다 길어졌어요")  # fmt: skip
LEVEL = {"loud": 0.7, "soft": 0.08}
LABELS = ["loud", "soft"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> list[np.ndarray]:
    need_espeak()
    directory = tmp_path_factory.mktemp("voices")
    out = []
    for i, text in enumerate(SENTENCES):
        path = directory / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(path), text], check=True)
        wave = load_audio(path, RATE)
        out.append((wave / np.abs(wave).max()).astype(np.float32))
    return out


def _clips(voices, n: int, gain: float = 1.0) -> tuple[list[np.ndarray], list[str]]:
    labels = [LABELS[i % 2] for i in range(n)]
    return [voices[i % len(voices)] * LEVEL[x] * gain for i, x in enumerate(labels)], labels


@pytest.fixture(scope="module")
def bundles(voices, tmp_path_factory) -> tuple[Bundle, Bundle]:
    """The same head, without and with a speaker normalisation (two training 'speakers':
    the voices at two loudness levels)."""
    speech = build_encoder("toy-stats", "speech")
    quiet, labels = _clips(voices, 8, 0.5)
    loud, _ = _clips(voices, 8, 1.0)
    x = speech.encode(quiet + loud)
    y = np.array([LABELS.index(x) for x in labels + labels])
    config = TrainConfig(epochs=150, hidden=16, lr=1e-2, batch_size=4)
    trained = fit_head(x, y, n_classes=2, config=config, input_dims={"speech": speech.dim},
                       progress=False)  # fmt: skip
    out = tmp_path_factory.mktemp("bundles") / "speech"
    save_bundle(out, trained, labels=LABELS, modality="speech", encoders={"speech": speech})
    norm = SpeakerNorm.fit(x, ["quiet"] * 8 + ["loud"] * 8, k=1.0)
    adapted = Bundle.load(out)
    adapted.speaker_norm = norm
    return Bundle.load(out), adapted


@pytest.fixture(scope="module")
def recording(voices, tmp_path_factory) -> Path:
    clips, labels = _clips(voices, 6, 0.7)
    path = tmp_path_factory.mktemp("rec") / "session.wav"
    compose_recording(clips, labels, path, gap_s=(1.2, 2.0), noise_db=-60, seed=3)
    return path


def _p(table: pd.DataFrame) -> np.ndarray:
    return table[[f"p_{x}" for x in LABELS]].to_numpy(float)


def test_whole_and_causal_statistics_of_one_channel(bundles, recording):
    plain, adapted = bundles
    whole = build_timeline(adapted, recording, progress=False).table
    causal = build_timeline(adapted, recording, adapt="causal", progress=False).table
    n = len(whole)
    assert n >= 4 and list(causal["start_s"]) == list(whole["start_s"])
    assert list(whole["speaker_clips"]) == [n] * n
    assert list(causal["speaker_clips"]) == list(range(1, n + 1))
    # the last segment sees every segment either way
    np.testing.assert_allclose(_p(causal)[-1], _p(whole)[-1], atol=TOLERANCE)
    unadapted = build_timeline(plain, recording, progress=False).table
    assert "speaker_clips" not in unadapted.columns
    assert np.abs(_p(unadapted) - _p(whole)).max() > 1e-3

    # the same segments through Bundle.predict, one speaker: the same probabilities
    spans = list(zip(whole["start_s"], whole["end_s"], strict=True))
    blocks = iter_blocks(recording, channel=None, block_s=SegmentSettings().block_s)
    waves = [(wave, ANALYSIS_RATE_HZ) for _, wave in iter_spans(blocks, spans)]
    direct = adapted.predict(waves, speaker="mix")
    np.testing.assert_allclose(
        _p(whole), [[p.probabilities[x] for x in LABELS] for p in direct], atol=1e-4
    )


def test_each_channel_is_its_own_speaker(bundles, voices, tmp_path):
    _, adapted = bundles
    paths = []
    for k, gain in enumerate((0.4, 1.0)):
        clips, labels = _clips(voices[k:], 3 + k, gain)
        paths.append(tmp_path / f"{k}.wav")
        compose_recording(clips, labels, paths[-1], seed=k)
    a, b = (sf.read(p)[0] for p in paths)
    stereo = np.zeros((max(len(a), len(b)), 2), dtype=np.float32)
    stereo[: len(a), 0], stereo[: len(b), 1] = a, b
    sf.write(tmp_path / "call.wav", stereo, RATE)
    timeline = build_timeline(adapted, tmp_path / "call.wav", channels="separate",
                              adapt="causal", progress=False)  # fmt: skip
    for name, part in timeline.channels().items():
        assert list(part["speaker_clips"]) == list(range(1, len(part) + 1)), name


def test_the_command_writes_speaker_clips_and_the_mode(bundles, recording, tmp_path,
                                                       monkeypatch):  # fmt: skip
    plain, adapted = bundles
    monkeypatch.setattr("emofuse.cli.timeline.load_bundle", lambda path: adapted)
    out = tmp_path / "out"
    argv = ["timeline", str(plain.path), str(recording), "-o", str(out), "--no-progress"]
    assert main([*argv, "--adapt", "causal"]) == 0
    segments = pd.read_csv(out / "segments.csv")
    assert list(segments["speaker_clips"]) == list(range(1, len(segments) + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["speaker_adapt"] == "causal"
    with pytest.raises(SystemExit):
        main([*argv, "--adapt", "sometimes"])
    with pytest.raises(TimelineError, match="adapt must be one of"):
        build_timeline(adapted, recording, adapt="sometimes", progress=False)
    assert (
        build_timeline(plain, recording, progress=False).summary["settings"]["speaker_adapt"]
        is None
    )


def test_the_service_takes_the_adapt_mode(bundles, recording):
    """POST /timeline's `adapt` field: the same segments and probabilities as
    build_timeline with that mode; anything else is refused with 422."""
    from fastapi.testclient import TestClient

    from emofuse.serve import create_app

    _, adapted = bundles
    client = TestClient(create_app(adapted, warm=False))
    audio = ("audio", ("session.wav", recording.read_bytes(), "audio/wav"))
    for mode in ("whole", "causal"):
        answer = client.post("/timeline", files=[audio], data={"adapt": mode})
        assert answer.status_code == 200, answer.text
        served = pd.DataFrame(answer.json()["segments"])
        local = build_timeline(adapted, recording, adapt=mode, progress=False).table
        assert list(served["speaker_clips"]) == list(local["speaker_clips"])
        np.testing.assert_allclose(_p(served), _p(local), atol=TOLERANCE)
    answers = {
        mode: client.post("/timeline", files=[audio], data={"adapt": mode}).json()["segments"]
        for mode in ("whole", "causal")
    }
    whole, causal = (_p(pd.DataFrame(answers[m])) for m in ("whole", "causal"))
    assert not np.allclose(whole, causal, atol=1e-4)  # the field is not ignored
    refused = client.post("/timeline", files=[audio], data={"adapt": "sideways"})
    assert refused.status_code == 422 and "adapt" in refused.text
