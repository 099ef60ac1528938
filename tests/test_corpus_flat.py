from pathlib import Path

import pandas as pd
import pytest
from support.corpus_fixtures import build_flat, label_json, write_json, write_tone

from emofuse.cli import main
from emofuse.corpus import detect_layout, read_corpus, read_table, scan
from emofuse.corpus.flat import read_flat
from emofuse.corpus.rows import stem_ids


def _good_specs() -> list[tuple[str, float, dict]]:
    """Six clips: 2 speakers x 3 scripts, labels given in each accepted place."""
    return [
        ("PSB_00001", 0.31, label_json("PSB_00001.wav", "안녕하세요.", "기쁨")),
        ("PSB_00002", 0.42, {"emotion": "슬픔", "text": "너무 슬퍼요."}),
        ("PSB_00003", 0.53, {"label": "angry", "전사정보": {"OrgLabelText": "화났어요!"}}),
        ("sub/KJH_00001", 0.64, label_json("KJH_00001.wav", "안녕하세요.", "중립")),
        ("sub/KJH_00002", 0.75, {"화자정보": {"Emotion": "당황"}, "text": "너무 슬퍼요."}),
        ("sub/KJH_00003", 0.86, {"label": "HURT", "text": "화났어요!"}),
    ]


def test_flat_tree_gives_speakers_scripts_labels_and_durations(tmp_path):
    build_flat(tmp_path, _good_specs())
    assert detect_layout(tmp_path) == "flat"
    result = read_corpus(tmp_path, workers=1, progress=False)

    assert result.problems.empty, result.problems
    table = result.table.set_index("id")
    assert sorted(table.index) == ["KJH_00001", "KJH_00002", "KJH_00003",
                                   "PSB_00001", "PSB_00002", "PSB_00003"]  # fmt: skip
    expected = {
        "PSB_00001": ("happy", "PSB", "00001", 0.31, "안녕하세요."),
        "PSB_00002": ("sad", "PSB", "00002", 0.42, "너무 슬퍼요."),
        "PSB_00003": ("angry", "PSB", "00003", 0.53, "화났어요!"),
        "KJH_00001": ("neutral", "KJH", "00001", 0.64, "안녕하세요."),
        "KJH_00002": ("embarrassed", "KJH", "00002", 0.75, "너무 슬퍼요."),
        "KJH_00003": ("hurt", "KJH", "00003", 0.86, "화났어요!"),
    }
    for ident, (label, speaker, script, duration, text) in expected.items():
        row = table.loc[ident]
        assert (row["label"], row["speaker"], row["script"], row["text"]) == (
            label, speaker, script, text,
        )  # fmt: skip
        assert row["duration_s"] == pytest.approx(duration, abs=1e-3)
        assert Path(row["audio"]).exists() and Path(row["audio"]).stem == ident
    assert set(table["source_split"]) == {""}
    assert result.labels == ["happy", "angry", "sad", "embarrassed", "neutral", "hurt"]


def test_flat_split_folders_and_colliding_stems(tmp_path):
    spec = label_json("x.wav", "문장.", "기쁨")
    build_flat(tmp_path, [("Training/PSB_00001", 0.2, spec), ("Validation/PSB_00001", 0.3, spec)])
    table = read_flat(tmp_path, workers=1, progress=False).table
    assert sorted(table["id"]) == ["Training/PSB_00001", "Validation/PSB_00001"]
    assert sorted(table["source_split"]) == ["train", "validation"]


def test_flat_bad_files_are_reported_and_good_rows_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "MIN_PARALLEL", 0)
    build_flat(tmp_path, _good_specs())
    bad = {}
    bad["missing-wav"] = write_json(tmp_path / "BAD_00001.json", {"emotion": "기쁨", "text": "a"})
    bad["missing-json"] = write_tone(tmp_path / "BAD_00002.wav", 0.2)
    write_tone(tmp_path / "BAD_00003.wav", 0.2)
    bad["broken-json"] = tmp_path / "BAD_00003.json"
    bad["broken-json"].write_text('{"emotion": "기쁨",', encoding="utf-8")
    bad["unreadable-audio"] = tmp_path / "BAD_00004.wav"
    bad["unreadable-audio"].write_bytes(b"\x00" * 100)
    write_json(tmp_path / "BAD_00004.json", {"emotion": "기쁨", "text": "a"})
    bad["empty-audio"] = write_tone(tmp_path / "BAD_00005.wav", 0.0)
    write_json(tmp_path / "BAD_00005.json", {"emotion": "기쁨", "text": "a"})
    for n, (kind, obj) in enumerate(
        [
            ("missing-field", {"text": "감정이 없다"}),
            ("unknown-label", {"emotion": "놀람", "text": "어머!"}),
            ("empty-text", {"emotion": "기쁨", "text": ""}),
        ],
        start=6,
    ):
        write_tone(tmp_path / f"BAD_0000{n}.wav", 0.2)
        bad[kind] = write_json(tmp_path / f"BAD_0000{n}.json", obj)

    result = read_corpus(tmp_path, workers=2, progress=False)
    assert len(result.table) == 6 and not result.table["id"].str.startswith("BAD").any()
    problems = result.problems
    for kind, file in bad.items():
        reasons = problems.loc[problems["file"] == str(file), "reason"].tolist()
        assert len(reasons) == 1 and reasons[0].startswith(f"{kind}: "), (kind, reasons)
    assert len(problems) == len(bad)
    assert "'놀람'" in problems.loc[problems["file"] == str(bad["unknown-label"]), "reason"].iloc[0]


def test_cli_prepare_flat_to_csv(tmp_path, capsys):
    build_flat(tmp_path / "c", _good_specs())
    out = tmp_path / "flat.csv"
    assert main(["prepare", str(tmp_path / "c"), "-o", str(out), "--layout", "flat"]) == 0
    assert "6 utterances, 0 problems" in capsys.readouterr().out
    table, labels = read_table(out)
    assert len(table) == 6 and labels[0] == "happy"
    assert table["duration_s"].dtype == "float64"
    assert not (tmp_path / "flat.problems.csv").exists()
    assert isinstance(pd.read_csv(out), pd.DataFrame)


def test_stem_ids_fall_back_only_where_stems_collide():
    stems = ["a", "a", "b", "a", "c"]
    fallbacks = {0: ("train/a", "x/0"), 1: ("train/a", "x/1"), 3: ("test/a", "x/3"), 4: ("x/4",)}
    ids = stem_ids(stems, lambda i: fallbacks[i], reserved={"c"})
    assert ids[2] == "b"
    assert ids[3] == "test/a"  # its split prefix is enough
    assert {ids[0], ids[1]} == {"x/0", "x/1"}  # same split: the relative path
    assert ids[4] == "x/4" and len(set(ids)) == 5
