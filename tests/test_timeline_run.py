"""The timeline end to end: a recording built from spoken clips with known labels, joined
by pauses of low noise, must come back as segments on those clips with those labels.

Speech comes from espeak-ng (Korean); the bundles use the toy encoders (tests/support/toy_encoders.py)
and learn loud from soft speech, so a label is right only if the segment holds its clip.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-len
from support.read_spy import spy_on_reads
from support.requirements import need_espeak
from support.thresholds import threshold_in_widest_gap

from emofuse.audio import AudioError, load_audio
from emofuse.bundle import Bundle, Prediction, save_bundle
from emofuse.cli import main
from emofuse.encoders import build_encoder
from emofuse.head.train import TrainConfig, fit_head
from emofuse.timeline import SegmentSettings, TimelineError, build_timeline
from emofuse.timeline.compose import compose_recording
from emofuse.timeline.scoring import boundary_error_s, match_segments

RATE = 16_000
SENTENCES = (
    "오늘 정말 기분이 좋아요",
    "왜 그랬는지 모르겠어요",
    "내일은 비가 온다고 했어요",
    "그 사람을 다시 만나고 싶지 않아요",
    "이번 주말에는 집에서 쉬고 싶어요",
    "회의가 생각보다 길어졌어요",
)
LEVEL = {"loud": 0.7, "soft": 0.08}  # peak amplitude per label


def speak(text: str, directory: Path, name: str) -> np.ndarray:
    path = directory / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(path), text], check=True)
    wave = load_audio(path, RATE)
    return (wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> list[np.ndarray]:
    need_espeak()
    directory = tmp_path_factory.mktemp("voices")
    return [speak(s, directory, f"s{i}") for i, s in enumerate(SENTENCES)]


def labelled(voices: list[np.ndarray], n: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """``n`` clips alternating loud and soft, with the sentence each says."""
    clips, labels, texts = [], [], []
    for i in range(n):
        label = ("loud", "soft")[i % 2]
        clips.append(voices[i % len(voices)] * LEVEL[label])
        labels.append(label)
        texts.append(SENTENCES[i % len(voices)])
    return clips, labels, texts


def train(voices, out: Path, modality: str) -> Bundle:
    clips, labels, texts = labelled(voices, 12)
    speech = build_encoder("toy-stats", "speech")
    blocks = [speech.encode(clips)]
    encoders = {"speech": speech}
    dims = {"speech": speech.dim}
    if modality == "both":
        text = build_encoder("toy-len", "text")
        blocks.append(text.encode(texts))
        encoders["text"], dims["text"] = text, text.dim
    y = np.array([0 if label == "loud" else 1 for label in labels])
    config = TrainConfig(epochs=150, hidden=16, lr=1e-2, batch_size=4)
    trained = fit_head(np.hstack(blocks), y, n_classes=2, config=config, input_dims=dims,
                       progress=False)  # fmt: skip
    save_bundle(out, trained, labels=["loud", "soft"], modality=modality, encoders=encoders)
    return Bundle.load(out)


@pytest.fixture(scope="module")
def speech_bundle(voices, tmp_path_factory) -> Bundle:
    return train(voices, tmp_path_factory.mktemp("bundles") / "speech", "speech")


@pytest.fixture(scope="module")
def both_bundle(voices, tmp_path_factory) -> Bundle:
    return train(voices, tmp_path_factory.mktemp("bundles") / "both", "both")


@pytest.fixture(scope="module")
def recording(voices, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    clips, labels, texts = labelled(voices, 10)
    path = tmp_path_factory.mktemp("rec") / "session.wav"
    truth = compose_recording(clips, labels, path, gap_s=(1.2, 2.0), noise_db=-60, seed=3)
    return path, truth.assign(text=texts)


def spans(table: pd.DataFrame) -> list[tuple[float, float]]:
    return list(zip(table.start_s, table.end_s, strict=True))


def test_segments_land_on_the_clips_with_their_labels(speech_bundle, recording):
    path, truth = recording
    timeline = build_timeline(speech_bundle, path, progress=False)
    match = match_segments(spans(truth), spans(timeline.table))
    assert match.share_matched(0.5) >= 0.9
    assert boundary_error_s(spans(truth), spans(timeline.table), match) < 0.3
    got = [timeline.table.label.iloc[j] for j in match.segment]
    assert np.mean(np.array(got) == truth.label.to_numpy()) >= 0.9
    row = timeline.table.iloc[0]
    assert row.confidence == pytest.approx(max(row.p_loud, row.p_soft), abs=1e-3)
    shares = timeline.summary["time_share"]
    assert sum(v["share"] for v in shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert timeline.summary["transitions"]["count"] >= 7  # labels alternate


def test_the_command_writes_the_three_outputs(speech_bundle, recording, tmp_path, capsys):
    path, truth = recording
    out = tmp_path / "out"
    code = main(["timeline", str(speech_bundle.path), str(path), "-o", str(out), "--no-progress"])
    assert code == 0
    table = pd.read_csv(out / "segments.csv")
    assert list(table.columns) == [
        "start_s", "end_s", "label", "confidence", "p_loud", "p_soft", "text", "warnings",
    ]  # fmt: skip
    assert len(table) == pytest.approx(len(truth), abs=1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["max_segment_s"] == SegmentSettings().max_segment_s
    assert set(summary["longest_runs"]) <= {"loud", "soft"}
    assert (out / "timeline.png").stat().st_size > 5000
    assert "segments" in capsys.readouterr().err


def test_block_size_changes_neither_the_reads_nor_the_result(speech_bundle, recording, monkeypatch):
    path, _ = recording
    asked = spy_on_reads(monkeypatch)
    small = build_timeline(speech_bundle, path, settings=SegmentSettings(block_s=3.0),
                           progress=False)  # fmt: skip
    assert asked and max(asked) <= 3 * RATE and -1 not in asked
    monkeypatch.undo()
    large = build_timeline(speech_bundle, path, settings=SegmentSettings(block_s=60.0),
                           progress=False)  # fmt: skip
    pd.testing.assert_frame_equal(small.table, large.table, atol=1e-3)


def test_silence_only_gives_an_empty_timeline_and_says_so(speech_bundle, tmp_path, capsys):
    path = tmp_path / "quiet.wav"
    sf.write(path, (1e-3 * np.random.default_rng(0).standard_normal(20 * RATE)).astype("f4"), RATE)
    timeline = build_timeline(speech_bundle, path, progress=False)
    assert timeline.empty and "no speech found" in timeline.message
    assert timeline.summary["segments"] == 0
    out = tmp_path / "out"
    assert (
        main(["timeline", str(speech_bundle.path), str(path), "-o", str(out), "--no-progress"]) == 0
    )
    assert "no speech found" in capsys.readouterr().err
    assert pd.read_csv(out / "segments.csv").empty and (out / "timeline.png").exists()


def test_a_recording_shorter_than_one_segment_gives_one_row(speech_bundle, voices, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, 0.5 * voices[0][: int(0.6 * RATE)], RATE)
    timeline = build_timeline(speech_bundle, path, progress=False)
    assert len(timeline.table) == 1
    assert timeline.table.end_s.iloc[0] <= 0.6 + 1e-6


def test_unreadable_file_is_named(speech_bundle, tmp_path, capsys):
    junk = tmp_path / "call.mp3"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AudioError, match="call.mp3"):
        build_timeline(speech_bundle, junk, progress=False)
    assert main(["timeline", str(speech_bundle.path), str(junk), "-o", str(tmp_path / "o")]) == 2
    assert "call.mp3" in capsys.readouterr().err


def test_a_text_bundle_without_words_names_both_ways_out(both_bundle, recording, tmp_path, capsys):
    path, _ = recording
    with pytest.raises(TimelineError, match=r"--asr vosk.*--transcript FILE"):
        build_timeline(both_bundle, path, progress=False)
    with pytest.raises(TimelineError, match=r"--asr vosk.*--transcript FILE"):
        build_timeline(both_bundle, path, asr="none", progress=False)
    assert main(["timeline", str(both_bundle.path), str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--asr vosk" in err and "--transcript" in err


def test_a_transcript_gives_each_segment_its_sentence(both_bundle, recording, tmp_path):
    path, truth = recording
    srt = tmp_path / "session.srt"
    srt.write_text(
        "\n".join(
            f"{i + 1}\n{_clock(r.start_s)} --> {_clock(r.end_s)}\n{r.text}\n"
            for i, r in enumerate(truth.itertuples())
        ),
        encoding="utf-8",
    )
    timeline = build_timeline(both_bundle, path, transcript=srt, progress=False)
    match = match_segments(spans(truth), spans(timeline.table))
    for i, j in enumerate(match.segment):
        if match.iou[i] >= 0.5:
            assert timeline.table.text.iloc[j] == truth.text.iloc[i]
    assert timeline.summary["text_from"] == "transcript"


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def test_separate_channels_give_one_timeline_each(speech_bundle, voices, tmp_path):
    left_clips, left_labels, _ = labelled(voices, 3)
    right_clips, right_labels, _ = labelled(voices[3:], 3)
    left = compose_recording(left_clips, left_labels, tmp_path / "l.wav", seed=1)
    right = compose_recording(right_clips, right_labels, tmp_path / "r.wav", seed=2)
    a, b = sf.read(tmp_path / "l.wav")[0], sf.read(tmp_path / "r.wav")[0]
    n = max(len(a), len(b))
    stereo = np.zeros((n, 2), dtype=np.float32)
    stereo[: len(a), 0], stereo[: len(b), 1] = a, b
    sf.write(tmp_path / "call.wav", stereo, RATE)
    timeline = build_timeline(speech_bundle, tmp_path / "call.wav", channels="separate",
                              progress=False)  # fmt: skip
    parts = timeline.channels()
    assert set(parts) == {"0", "1"}
    for name, truth in (("0", left), ("1", right)):
        assert match_segments(spans(truth), spans(parts[name])).share_matched() == 1.0
    assert set(timeline.summary["channels_summary"]) == {"0", "1"}
    per_channel = timeline.summary["channels_summary"].values()
    assert timeline.summary["transitions"]["count"] == sum(
        c["transitions"]["count"] for c in per_channel
    )  # a change of speaker is not a change of emotion


@pytest.mark.parametrize(
    "fmt, subtype", [("flac", None), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")]
)
def test_compressed_formats_read_like_wav(speech_bundle, recording, tmp_path, fmt, subtype):
    path, truth = recording
    wave, rate = sf.read(path, dtype="float32")
    other = tmp_path / f"session.{fmt}"
    sf.write(other, wave, rate, subtype=subtype)
    timeline = build_timeline(speech_bundle, other, progress=False)
    assert match_segments(spans(truth), spans(timeline.table)).share_matched() >= 0.9


def test_by_modality_outputs_pass_through(recording):
    path, _ = recording

    class WithModalities:
        labels = ["loud", "soft"]
        needs_text = False

        def predict(self, audio, texts=None, **kwargs):
            by = {"speech": {"loud": 0.8, "soft": 0.2}, "text": {"loud": 0.4, "soft": 0.6}}
            return [
                Prediction("loud", {"loud": 0.7, "soft": 0.3}, extra={"by_modality": by})
                for _ in audio
            ]

    table = build_timeline(WithModalities(), path, progress=False).table
    assert {"speech_p_loud", "text_p_soft"} <= set(table.columns)
    assert (table.text_p_soft == 0.6).all()


def test_real_speech_from_emodb(emodb_dir, speech_bundle, tmp_path):
    manifest = pd.read_csv(emodb_dir / "manifest.csv").sample(12, random_state=0)
    path = tmp_path / "emodb.wav"
    truth = compose_recording([emodb_dir / a for a in manifest.audio], list(manifest.label),
                              path, seed=0)  # fmt: skip
    timeline = build_timeline(speech_bundle, path, progress=False)
    match = match_segments(spans(truth), spans(timeline.table))
    assert match.share_matched(0.5) >= 0.9
    assert boundary_error_s(spans(truth), spans(timeline.table), match) < 0.3


def test_segments_without_words_are_scored_on_empty_text_with_a_warning(both_bundle, recording,
                                                                        tmp_path):  # fmt: skip
    path, truth = recording
    first = truth.iloc[0]
    csv = tmp_path / "partial.csv"
    csv.write_text(f"start,end,text\n{first.start_s},{first.end_s},{first.text}\n", "utf-8")
    timeline = build_timeline(both_bundle, path, transcript=csv, progress=False)
    assert len(timeline.table) >= len(truth) - 1
    assert timeline.table.text.iloc[0] == first.text
    rest = timeline.table.iloc[1:]
    assert (rest.text == "").all()
    assert rest.warnings.str.contains("empty transcript").all()
    # the words came from a file, not from a recogniser: the warning says so
    assert rest.warnings.str.contains("the transcript has no words in this segment").all()
    assert not rest.warnings.str.contains("speech recognition").any()


def test_bundle_timeline_is_build_timeline(speech_bundle, recording):
    path, _ = recording
    via_bundle = speech_bundle.timeline(path, progress=False)
    direct = build_timeline(speech_bundle, path, progress=False)
    pd.testing.assert_frame_equal(via_bundle.table, direct.table)


def test_min_confidence_marks_the_same_segments_predict_would(speech_bundle, recording, tmp_path):
    """The uncertain rule of predict/serve (emofuse.head.confidence) on every segment: a
    threshold between two segments' top probabilities splits them exactly."""
    recording, _ = recording
    plain = build_timeline(speech_bundle, recording, progress=False)
    assert "uncertain" not in plain.table.columns  # only when asked
    cut = threshold_in_widest_gap(plain.table[[f"p_{label}" for label in plain.labels]].max(axis=1))
    marked = build_timeline(speech_bundle, recording, progress=False, min_confidence=cut)
    top = marked.table[[f"p_{label}" for label in marked.labels]].max(axis=1)
    assert marked.table["uncertain"].tolist() == (top < cut).tolist()
    assert 0 < marked.summary["uncertain_segments"] < len(marked.table)
    assert marked.table["label"].tolist() == plain.table["label"].tolist()  # labels kept
    out = tmp_path / "out"
    code = main(["timeline", str(speech_bundle.path), str(recording), "-o", str(out),
                 "--min-confidence", str(cut), "--no-progress"])  # fmt: skip
    assert code == 0
    written = pd.read_csv(out / "segments.csv")
    assert written["uncertain"].tolist() == marked.table["uncertain"].tolist()
    assert main(["timeline", str(speech_bundle.path), str(recording), "-o", str(out),
                 "--min-confidence", "1.5", "--no-progress"]) == 2  # fmt: skip
    with pytest.raises(TimelineError, match="min_confidence must be a probability"):
        build_timeline(speech_bundle, recording, progress=False, min_confidence=-1)
