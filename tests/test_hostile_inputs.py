"""Hostile inputs, round 2 (issue 22): audio and corpus files that were scored or read as
if fine. Each probe once gave a confident answer, a silent extra class or a parser's
riddle; a fix that regresses brings it back to red.

Bounded: toy encoders, tiny clips and tiny corpora (the module runs in seconds).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import support.toy_encoders  # noqa: F401 - registers toy-stats
from support.serve_support import load_toy_bundle, toy_bundle, toy_clip

from emofuse.audio import AudioOutOfRange, load_waveform
from emofuse.cli import main
from emofuse.corpus import read_corpus
from emofuse.corpus.table import read_table
from emofuse.features import extract_features
from emofuse.labels import LabelSet, LabelsFoldedWarning, fold_labels, label_key
from emofuse.splits import (
    SPLIT_STRATEGIES,
    assign_split,
    cross_validation_folds,
    leakage_report,
)


# ------------------------------------------------------------------------ helpers
def clip(path: Path, seed: int, *, seconds: float = 0.5, rate: int = 16_000, scale=1.0,
         subtype: str = "PCM_16") -> Path:  # fmt: skip
    """A distinct noisy tone (``seed`` picks it), written as ``subtype``."""
    wave = toy_clip("happy", seconds, seed=seed)
    if rate != 16_000:
        wave = toy_clip("happy", seconds * 16_000 / rate, seed=seed)[: round(seconds * rate)]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave * scale, rate, subtype=subtype)
    return path


def truncated(path: Path, seed: int) -> Path:
    """A WAV whose header says 4x the frames the file holds (a cut copy)."""
    clip(path, seed, seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 4])
    return path


def manifest(path: Path, rows: list[dict], **to_csv) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False, **to_csv)
    return path


def speech_table(paths: list[Path]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [p.stem for p in paths],
            "audio": [str(p) for p in paths],
            "text": [""] * len(paths),
            "label": ["happy"] * len(paths),
            "speaker": ["s"] * len(paths),
            "script": [""] * len(paths),
            "duration_s": [0.5] * len(paths),
            "source_split": [""] * len(paths),
        }
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_toy_bundle(tmp_path_factory, "speech")


# ------------------------------------------------------------------------ 1. loud float audio
def test_float_audio_far_above_full_scale_is_refused_on_every_door(tmp_path):
    path = clip(tmp_path / "loud.wav", 1, scale=1e6, subtype="FLOAT")
    doors = [path, path.read_bytes(), (toy_clip("happy", 0.5) * 1e6, 16_000)]
    for source in doors:
        with pytest.raises(AudioOutOfRange, match=r"samples reach [0-9.e+]+ \(\+1[0-9]{2} dBFS"):
            load_waveform(source, 16_000, name="loud.wav")
    with pytest.raises(AudioOutOfRange, match=str(path)):
        load_waveform(path, 16_000)
    # A float file that overshoots a little is a recording, kept as it is.
    hot = clip(tmp_path / "hot.wav", 2, scale=3.0, subtype="FLOAT")
    assert 1.0 < np.abs(load_waveform(hot, 16_000)).max() < 4.0


def test_predict_and_extract_refuse_a_mis_scaled_clip(tmp_path, bundle):
    loud = clip(tmp_path / "loud.wav", 1, scale=1e6, subtype="FLOAT")
    with pytest.raises(AudioOutOfRange, match="loud.wav"):
        bundle.predict([loud])

    fine = clip(tmp_path / "fine.wav", 2)
    reports: list = []
    extract_features(speech_table([loud, fine]), store=tmp_path / "store", speech="toy-stats",
                     progress=False, reports=reports)  # fmt: skip
    (failure,) = reports[0].failed
    assert failure.file == str(loud) and "AudioOutOfRange" in failure.reason
    assert reports[0].computed == 1


# ------------------------------------------------------------------------ 2. truncated WAV
def test_prepare_reports_a_truncated_wav(tmp_path):
    cut = truncated(tmp_path / "cut.wav", 1)
    whole = clip(tmp_path / "whole.wav", 2)
    m = manifest(tmp_path / "m.csv", [{"audio": cut.name, "label": "happy"},
                                      {"audio": whole.name, "label": "sad"}])  # fmt: skip
    result = read_corpus(m, progress=False)
    assert list(result.table["audio"]) == [str(whole)]
    (reason,) = result.problems["reason"]
    assert reason.startswith("truncated-audio: the header says 2.00 s, the file holds 0.50 s")


def test_predict_warns_and_extract_records_a_truncated_wav(tmp_path, bundle):
    cut = truncated(tmp_path / "cut.wav", 1)
    for source in (cut, cut.read_bytes()):
        (prediction,) = bundle.predict([source])
        warnings = prediction.extra.get("warnings", [])
        assert any(w.startswith("truncated: the header says 2.00 s") for w in warnings), warnings

    reports: list = []
    extract_features(speech_table([cut, clip(tmp_path / "ok.wav", 2)]), store=tmp_path / "st",
                     speech="toy-stats", progress=False, reports=reports)  # fmt: skip
    (failure,) = reports[0].failed
    assert failure.file == str(cut) and failure.reason.startswith("truncated: the header says")


# ------------------------------------------------------------------------ 3. narrowband
def test_narrowband_audio_is_said(tmp_path, bundle, capsys):
    phone = clip(tmp_path / "phone.wav", 1, rate=8_000)
    (prediction,) = bundle.predict([phone])
    (warning,) = prediction.extra["warnings"]
    assert warning.startswith("narrowband: recorded at 8000 Hz")
    (wide,) = bundle.predict([clip(tmp_path / "wide.wav", 2)])
    assert not wide.extra.get("warnings")

    reports: list = []
    extract_features(speech_table([phone]), store=tmp_path / "st", speech="toy-stats",
                     progress=False, reports=reports)  # fmt: skip
    assert reports[0].computed == 1  # encoded, and said
    assert "1 clip(s) recorded below 16000 Hz (narrowband" in capsys.readouterr().err


def test_predict_cli_prints_the_audio_warnings(tmp_path, tmp_path_factory, capsys):
    bundle_dir = toy_bundle(tmp_path_factory, "speech")
    phone = clip(tmp_path / "phone.wav", 1, rate=8_000)
    assert main(["predict", str(bundle_dir), str(phone), "--plugin", "support.toy_encoders"]) == 0
    assert "warning: narrowband: recorded at 8000 Hz" in capsys.readouterr().out


# ------------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def client(bundle):
    from fastapi.testclient import TestClient

    from emofuse.serve import ServeLimits, create_app

    limits = ServeLimits(max_body_bytes=2 << 20, max_audio_s=10.0, max_batch_files=4,
                         max_in_flight=2, queue_timeout_s=5.0)  # fmt: skip
    with TestClient(create_app(bundle, limits=limits)) as c:
        yield c


def _post(client, data: bytes, name: str):
    return client.post("/predict", files={"audio": (name, data, "audio/wav")})


def test_the_service_refuses_a_mis_scaled_clip(client, tmp_path):
    loud = clip(tmp_path / "loud.wav", 1, scale=1e6, subtype="FLOAT").read_bytes()
    answer = _post(client, loud, "loud.wav")
    assert answer.status_code == 422
    assert "loud.wav: samples reach" in answer.json()["detail"]


def test_the_service_warns_of_truncated_and_narrowband_uploads(client, tmp_path):
    cut = truncated(tmp_path / "cut.wav", 1).read_bytes()
    phone = clip(tmp_path / "phone.wav", 2, rate=8_000).read_bytes()
    for data, kind in ((cut, "truncated: "), (phone, "narrowband: ")):
        answer = _post(client, data, "clip.wav")
        assert answer.status_code == 200
        assert any(w.startswith(kind) for w in answer.json()["warnings"]), kind


# ------------------------------------------------------------------------ 4. duplicate audio
@pytest.fixture
def duplicated_corpus(tmp_path) -> Path:
    """12 speakers x 2 clips; the audio of s0's first clip is also s5's first (another
    name, another label), and s1's first clip is listed twice."""
    rows = []
    for s in range(12):
        for k in range(2):
            path = clip(tmp_path / "wav" / f"s{s}_{k}.wav", 10 * s + k)
            rows.append({"audio": path.name, "label": ("happy", "sad")[(s + k) % 2],
                         "speaker": f"s{s}", "text": f"sentence {s} {k}"})  # fmt: skip
    (tmp_path / "wav" / "s5_0.wav").write_bytes((tmp_path / "wav" / "s0_0.wav").read_bytes())
    rows.append({"audio": "s1_0.wav", "label": "sad", "speaker": "s7", "text": "again"})
    return manifest(tmp_path / "wav" / "m.csv", rows)


def test_prepare_reports_duplicate_audio(duplicated_corpus):
    result = read_corpus(duplicated_corpus, progress=False)
    assert len(result.table) == 25  # every row kept
    problems = result.problems[result.problems["reason"].str.startswith("duplicate-audio")]
    by_file = {Path(f).name: r for f, r in zip(problems["file"], problems["reason"], strict=True)}
    assert set(by_file) == {"s5_0.wav", "s1_0.wav"}
    assert "the same audio as" in by_file["s5_0.wav"] and "s0_0.wav" in by_file["s5_0.wav"]
    assert "labelled 'happy' and 'sad'" in by_file["s5_0.wav"]
    assert "the same file, listed again" in by_file["s1_0.wav"]
    groups = result.table.groupby("audio_group").size().drop("", errors="ignore")
    assert sorted(groups) == [2, 2]
    assert any("share their audio" in note for note in result.notes)


def test_prepare_hashes_only_where_header_facts_collide(tmp_path, monkeypatch):
    import emofuse.corpus.duplicates as duplicates

    opened: list[str] = []
    real = duplicates._fingerprints
    monkeypatch.setattr(duplicates, "_fingerprints", lambda ps: opened.extend(ps) or real(ps))
    rows = [{"audio": clip(tmp_path / f"c{i}.wav", i, seconds=0.3 + 0.01 * i).name,
             "label": "x"} for i in range(6)]  # fmt: skip
    clip(tmp_path / "twin.wav", 99, seconds=0.3)  # same length as c0, other content
    rows.append({"audio": "twin.wav", "label": "x"})
    result = read_corpus(manifest(tmp_path / "m.csv", rows), progress=False, workers=1)
    assert sorted(Path(p).name for p in opened) == ["c0.wav", "twin.wav"]
    assert "audio_group" not in result.table.columns and not len(result.problems)


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
def test_every_split_keeps_duplicate_audio_in_one_part(duplicated_corpus, strategy):
    table = read_corpus(duplicated_corpus, progress=False).table
    source = np.where(table["speaker"].isin(["s0", "s1", "s2"]), "test", "train")
    table["source_split"] = source  # s5's copy of s0's clip is in the corpus's train part
    for seed in range(4):
        split = assign_split(table, strategy, test_size=0.3, val_size=0.2, seed=seed)
        report = leakage_report(split)
        assert report.shared_audio == 0, (strategy, seed, split.attrs["split_notes"])
        assert report.first_leak("audio") is None


@pytest.mark.parametrize("scheme,group", [("kfold", "speaker"), ("kfold", "script"),
                                          ("logo", "speaker")])  # fmt: skip
def test_every_fold_keeps_duplicate_audio_on_one_side(duplicated_corpus, scheme, group):
    table = read_corpus(duplicated_corpus, progress=False).table
    for fold in cross_validation_folds(table, scheme, k=3, group=group, val_size=0.2):
        report = leakage_report(table.assign(part=fold.part))
        assert report.shared_audio == 0, fold.name


def test_the_leakage_report_counts_duplicate_audio_across_parts(duplicated_corpus):
    table = read_corpus(duplicated_corpus, progress=False).table
    part = np.where(table["speaker"] == "s5", "test", "train")  # s5's copy of s0's clip
    report = leakage_report(table.assign(part=part))
    assert report.shared_audio == 1
    value, a, b = report.first_leak("audio")
    assert value.endswith("s0_0.wav") and {a, b} == {"train", "test"}
    assert "audio: 1 clips in >1 part (duplicate audio)" in report.to_text()
    assert report.to_dict()["shared_audio"] == 1


# ------------------------------------------------------------------------ 5. label spellings
def test_labels_differing_in_case_spacing_or_form_are_one_class(tmp_path):
    nfd = unicodedata.normalize("NFD", "기쁨ㅋ")
    spellings = ["Angry", "angry", "angry", " ANGRY ", "Very  Sad", "very sad", nfd, "기쁨ㅋ"]
    rows = [{"audio": clip(tmp_path / f"c{i}.wav", i).name, "label": label}
            for i, label in enumerate(spellings)]  # fmt: skip
    result = read_corpus(manifest(tmp_path / "m.csv", rows), progress=False)
    # the most frequent spelling, ties to the first seen; Hangul composed (NFC) as read
    assert result.labels == ["Very  Sad", "angry", "기쁨ㅋ"]
    assert sorted(result.table["label"].unique()) == result.labels
    merges = [n for n in result.notes if "differ only in case" in n]
    assert merges == [
        "labels 'angry' (2), 'Angry' (1), 'ANGRY' (1) are one class, 'angry': they differ "
        "only in case, spacing or Unicode form",
        "labels 'Very  Sad' (1), 'very sad' (1) are one class, 'Very  Sad': they differ "
        "only in case, spacing or Unicode form",
    ]
    folded = fold_labels([nfd, "기쁨ㅋ", "기쁨ㅋ"])  # the rule itself: one class, NFC or not
    assert set(folded.mapping.values()) == {"기쁨ㅋ"} and label_key(nfd) == label_key("기쁨ㅋ")


def test_a_hand_made_table_with_two_spellings_is_folded_with_a_warning(tmp_path):
    table = speech_table([tmp_path / f"c{i}.wav" for i in range(3)])
    table["label"] = ["Angry", "angry", "angry"]
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    with pytest.warns(LabelsFoldedWarning, match="'angry' \\(2\\), 'Angry' \\(1\\)"):
        folded, labels = read_table(path)
    assert labels == ["angry"] and set(folded["label"]) == {"angry"}
    with pytest.raises(ValueError, match="duplicate label names"):
        LabelSet(names=("Angry", "angry"))


# ------------------------------------------------------------------------ 6. CSV dialects
def _prepare_error(source: Path, tmp_path: Path, capsys) -> str:
    assert main(["prepare", str(source), "-o", str(tmp_path / "t.parquet"), "--quiet"]) != 0
    return capsys.readouterr().err


def _predict_error(source: Path, tmp_path: Path, tmp_path_factory, capsys) -> str:
    bundle_dir = toy_bundle(tmp_path_factory, "speech")
    code = main(["predict", str(bundle_dir), "--manifest", str(source), "-o",
                 str(tmp_path / "out.csv"), "--plugin", "support.toy_encoders", "--no-progress"])  # fmt: skip
    assert code != 0
    return capsys.readouterr().err


@pytest.fixture
def cp949_csv(tmp_path) -> Path:
    clip(tmp_path / "a.wav", 1)
    rows = [{"audio": "a.wav", "text": "오늘 정말 기분이 좋아요", "label": "기쁨"}] * 30
    return manifest(tmp_path / "korean.csv", rows, encoding="cp949")


@pytest.fixture
def semicolon_csv(tmp_path) -> Path:
    clip(tmp_path / "a.wav", 1)
    rows = [{"audio": "a.wav", "text": f"line {i}", "label": "happy"} for i in range(30)]
    rows[24]["text"] = "well, hello"  # a comma on line 26: "Expected 1 fields in line 26"
    return manifest(tmp_path / "semi.csv", rows, sep=";")


def test_a_cp949_csv_is_named_with_the_fix(cp949_csv, tmp_path, tmp_path_factory, capsys):
    for message in (_prepare_error(cp949_csv, tmp_path, capsys),
                    _predict_error(cp949_csv, tmp_path, tmp_path_factory, capsys)):  # fmt: skip
        assert "not UTF-8 text" in message and "cp949 (Korean Windows" in message
        assert "iconv -f cp949 -t utf-8 korean.csv > korean-utf8.csv" in message
        assert "codec can't decode" not in message


def test_a_semicolon_csv_is_named_with_its_columns(semicolon_csv, tmp_path, tmp_path_factory,
                                                   capsys):  # fmt: skip
    for message in (_prepare_error(semicolon_csv, tmp_path, capsys),
                    _predict_error(semicolon_csv, tmp_path, tmp_path_factory, capsys)):  # fmt: skip
        assert "semicolon (';') into 3 columns: audio, text, label" in message
        assert "Expected 1 fields" not in message


def test_a_ragged_line_names_the_line_and_the_columns(tmp_path, capsys):
    clip(tmp_path / "a.wav", 1)
    (tmp_path / "m.csv").write_text("audio,label\na.wav,happy\na.wav,happy,extra\n")
    message = _prepare_error(tmp_path / "m.csv", tmp_path, capsys)
    assert "line 3 has 3 fields where the header has 2" in message
    assert "columns: audio, label" in message and "double quotes" in message


def test_the_timeline_reader_refuses_mis_scaled_float_audio(tmp_path):
    """The timeline reads long recordings in blocks, past load_waveform: the same loudness
    rule holds there."""
    import soundfile as sf

    from emofuse.audio import AudioError
    from emofuse.timeline.reader import iter_blocks

    path = tmp_path / "loud.wav"
    wave = np.sin(np.linspace(0, 400, 16_000)).astype(np.float32) * 1e6
    sf.write(path, wave, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="loud.wav: samples reach"):
        list(iter_blocks(path))


def test_the_timeline_says_a_recording_is_truncated_or_narrowband(tmp_path):
    """The timeline reads recordings past load_waveform: its summary says what the loader
    says of a clip (a WAV shorter than its header, audio recorded below 16 kHz)."""
    import soundfile as sf

    from emofuse.timeline.reader import recording_info
    from emofuse.timeline.run import recording_warnings

    wave = (np.sin(np.linspace(0, 2_000, 16_000)) * 0.3).astype(np.float32)
    whole = tmp_path / "whole.wav"
    sf.write(whole, wave, 16_000, subtype="PCM_16")
    assert recording_warnings(recording_info(whole)) == []
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 8_000])  # the header still says 1 s
    assert any(w.startswith("truncated") for w in recording_warnings(recording_info(cut)))
    phone = tmp_path / "phone.wav"
    sf.write(phone, wave[::2], 8_000, subtype="PCM_16")
    assert any(w.startswith("narrowband") for w in recording_warnings(recording_info(phone)))
