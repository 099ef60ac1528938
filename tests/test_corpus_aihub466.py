import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from support.corpus_fixtures import (
    EMOTION_FOLDERS,
    build_aihub466,
    label_json,
    standard_clips,
    write_json,
    write_tone,
)

from emofuse.cli import main
from emofuse.corpus import CorpusError, detect_layout, read_corpus, read_table, scan
from emofuse.corpus.aihub466 import folder_emotion, read_aihub466, speaker_from_code


def _by_stem(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {Path(a).stem: row for a, row in zip(table["audio"], table.itertuples(), strict=True)}


def test_good_tree_gives_labels_speakers_scripts_durations_and_splits(tmp_path):
    clips = standard_clips()
    # The same stem in both splits must still give unique ids.
    build_aihub466(tmp_path, clips)
    result = read_corpus(tmp_path, workers=1, progress=False)

    assert result.problems.empty, result.problems
    table = result.table
    assert len(table) == len(clips)
    assert table["id"].is_unique
    assert result.labels == ["happy", "angry", "sad"]  # the paper's order, present ones
    assert set(table["speaker"]) == {"0001_ABC", "0002_KDH"}
    for clip in clips:
        split = "train" if clip.split == "Training" else "validation"
        row = table[(table["source_split"] == split) & (table["audio"].str.contains(clip.stem))]
        assert len(row) == 1
        row = row.iloc[0]
        assert Path(row["audio"]).is_absolute() and Path(row["audio"]).exists()
        assert row["label"] == clip.label
        assert row["script"] == f"{clip.number:06d}"
        assert row["text"] == clip.text
        assert row["duration_s"] == pytest.approx(clip.duration_s, abs=1e-3)
        assert row["id"] in (clip.stem, f"{split}/{clip.stem}")
    # Stems repeat across the two splits (same speakers, same scripts): prefixed ids.
    assert set(table["id"]) == {
        f"{s}/{c.stem}" for c in clips for s in ["train" if c.split == "Training" else "validation"]
    }
    # Same script number <-> same sentence.
    assert table.groupby("script")["text"].nunique().max() == 1
    summary = result.summary()
    assert "12 utterances, 0 problems" in summary and "speakers: 2" in summary


def test_ids_stay_file_stems_when_they_do_not_collide(tmp_path):
    clips = [c for c in standard_clips() if c.split == "Training"]
    build_aihub466(tmp_path, clips)
    table = read_corpus(tmp_path, workers=1, progress=False).table
    assert sorted(table["id"]) == sorted(c.stem for c in clips)
    assert set(table["source_split"]) == {"train"}


def _plant_bad_files(root: Path) -> dict[str, Path]:
    """One of every problem kind, beside the standard good clips; returns kind -> file."""
    src = root / "Training" / "원천데이터" / "1.감정"
    lab = root / "Training" / "라벨링데이터" / "1.감정"
    spk = "0003_G1A1E1S0C0_BAD"
    bad: dict[str, Path] = {}

    def pair(folder, number, *, wav=True, obj=None, raw=None):
        stem = f"{spk}_{number:06d}"
        w = src / folder / spk / f"{stem}.wav"
        j = lab / folder / spk / f"{stem}.json"
        if wav:
            write_tone(w, 0.3)
        if raw is not None:
            j.parent.mkdir(parents=True, exist_ok=True)
            j.write_bytes(raw)
        elif obj is not False:
            write_json(j, obj or label_json(f"{stem}.wav", "문장입니다.", "기쁨"))
        return w, j

    bad["missing-wav"] = pair("1.기쁨", 901, wav=False)[1]
    bad["missing-json"] = pair("1.기쁨", 902, obj=False)[0]
    bad["broken-json"] = pair("1.기쁨", 903, raw=b'{"\xec\xa0\x84\xec\x82\xac": ')[1]
    w, _ = pair("1.기쁨", 904)
    w.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage-that-is-not-a-wav-file")
    bad["unreadable-audio"] = w
    w, _ = pair("1.기쁨", 905)
    write_tone(w, 0.0)
    bad["empty-audio"] = w
    bad["missing-field"] = pair("1.기쁨", 906, obj={"화자정보": {"Emotion": "기쁨"}})[1]
    bad["empty-text"] = pair("1.기쁨", 907, obj=label_json("x.wav", "   ", "기쁨"))[1]
    bad["label-mismatch"] = pair("1.기쁨", 908, obj=label_json("x.wav", "문장.", "분노"))[1]
    bad["unknown-label"] = pair("8.놀람", 909, obj=label_json("x.wav", "문장.", "놀람"))[1]
    return bad


def test_every_bad_file_is_a_problem_row_and_good_rows_are_kept(tmp_path):
    clips = standard_clips()
    build_aihub466(tmp_path, clips)
    bad = _plant_bad_files(tmp_path)
    result = read_corpus(tmp_path, workers=1, progress=False)

    assert len(result.table) == len(clips)
    assert not result.table["audio"].str.contains("_BAD").any()
    problems = result.problems
    assert list(problems.columns) == ["file", "reason"]
    for kind, file in bad.items():
        rows = problems[problems["file"] == str(file)]
        assert len(rows) == 1, (kind, problems.to_string())
        assert rows.iloc[0]["reason"].startswith(f"{kind}: "), rows.iloc[0]["reason"]
    assert len(problems) == len(bad)
    mismatch = problems[problems["reason"].str.startswith("label-mismatch")].iloc[0]["reason"]
    assert "happy" in mismatch and "분노" in mismatch
    assert "missing-field: no '전사정보.OrgLabelText'" in " ".join(problems["reason"])


def test_workers_in_parallel_give_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "MIN_PARALLEL", 0)  # use the process pool even for 21 files
    clips = standard_clips()
    build_aihub466(tmp_path, clips)
    _plant_bad_files(tmp_path)
    one = read_corpus(tmp_path, workers=1, progress=False)
    two = read_corpus(tmp_path, workers=2, progress=False)
    pd.testing.assert_frame_equal(one.table, two.table)
    pd.testing.assert_frame_equal(one.problems, two.problems)


def test_zip_prefixes_numbered_data_folders_and_nfd_names_still_pair(tmp_path):
    """The habit of AI-Hub downloads: TS_/TL_ folders from extracted zips under
    `01.원천데이터` / `02.라벨링데이터`, one level deeper than documented."""
    nfd = lambda s: unicodedata.normalize("NFD", s)  # noqa: E731
    root = tmp_path / "466"
    speaker = "0007_G1A3E1S0C0_LEE"
    for label, folder in [("sad", "2.슬픔"), ("neutral", "7.중립")]:
        stem = f"{speaker}_{'000011' if label == 'sad' else '000012'}"
        write_tone(
            root / "1.Training" / "01.원천데이터" / f"TS_{folder}" / speaker / f"{stem}.wav", 0.4
        )
        write_json(
            root
            / "1.Training"
            / nfd("02.라벨링데이터")
            / nfd(f"TL_{folder}")
            / speaker
            / f"{stem}.json",
            label_json(f"{stem}.wav", "그냥 그래요.", folder.split(".")[1]),
        )
    assert detect_layout(root) == "aihub466"
    result = read_aihub466(root, workers=1, progress=False)
    assert result.problems.empty, result.problems
    assert sorted(result.table["label"]) == ["neutral", "sad"]

    # macOS zip debris is ignored; a zip extracted twice (with and without its TS_
    # folder) is reported, not silently dropped or doubled.
    src = root / "1.Training" / "01.원천데이터"
    write_tone(root / "__MACOSX" / "1.Training" / "01.원천데이터" / "x.wav", 0.1)
    (src / "TS_2.슬픔" / speaker / f"._{speaker}_000011.wav").write_bytes(b"\x00\x05")
    name = f"{speaker}_000011.wav"
    again = write_tone(src / "2.슬픔" / speaker / name, 0.4)  # sorts before TS_2.슬픔
    result = read_aihub466(root, workers=1, progress=False)
    assert len(result.table) == 2
    assert result.problems.to_dict("records") == [
        {"file": str(src / "TS_2.슬픔" / speaker / name),
         "reason": f"duplicate-file: the same clip as {again}"}
    ]  # fmt: skip


def test_pointing_at_the_source_folder_itself_works(tmp_path):
    build_aihub466(tmp_path, [c for c in standard_clips() if c.split == "Validation"])
    result = read_corpus(tmp_path / "Validation" / "원천데이터", progress=False, workers=1)
    assert len(result.table) == 6 and result.problems.empty


@pytest.mark.parametrize(
    ("name", "label"),
    [("1.기쁨", "happy"), ("TS_4.불안", "anxious"), ("05_상처", "hurt"), ("중립", "neutral"),
     ("1.감정", None), ("0001_G1A3E1S0C0_ABC", None), ("8.놀람", None)],
)  # fmt: skip
def test_emotion_folder_names(name, label):
    assert folder_emotion(name) == label


def test_speaker_codes():
    assert speaker_from_code("0001_G1A3E1S0C0_ABC") == "0001_ABC"
    assert speaker_from_code("spk12") == "spk12"
    assert speaker_from_code("A_B") == "A_B"


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="cannot tell the corpus layout"):
        read_corpus(tmp_path / "empty")
    with pytest.raises(CorpusError, match="원천데이터"):
        read_corpus(tmp_path / "empty", layout="aihub466")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorpusError, match="not a manifest"):
        read_corpus(tmp_path / "notes.txt")


def test_cli_prepare_end_to_end(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    build_aihub466(corpus, standard_clips())
    bad = _plant_bad_files(corpus)
    out = tmp_path / "out" / "k466.parquet"

    assert main(["prepare", str(corpus), "-o", str(out), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "12 utterances, 9 problems" in printed
    table, labels = read_table(out)
    assert len(table) == 12 and labels == ["happy", "angry", "sad"]
    problems = pd.read_csv(tmp_path / "out" / "k466.problems.csv")
    assert set(problems["file"]) == {str(p) for p in bad.values()}

    custom = tmp_path / "report.csv"
    code = main(["prepare", str(corpus), "-o", str(out), "--problems", str(custom), "--strict",
                 "--quiet", "--layout", "aihub466"])  # fmt: skip
    assert code == 1 and len(pd.read_csv(custom)) == 9

    # A clean corpus: --strict passes and the stale default report is gone.
    for path in bad.values():
        path.unlink(missing_ok=True)
    for path in (corpus / "Training").rglob("*_BAD_*"):
        path.unlink()
    assert main(["prepare", str(corpus), "-o", str(out), "--strict", "--quiet"]) == 0
    assert not (tmp_path / "out" / "k466.problems.csv").exists()


def test_cli_reports_unreadable_source_as_one_line(tmp_path, capsys):
    code = main(["prepare", str(tmp_path / "missing"), "-o", str(tmp_path / "x.parquet")])
    assert code == 2
    err = capsys.readouterr().err
    assert "emofuse prepare: error:" in err and "no such file" in err


def test_emotion_folders_cover_all_seven():
    assert {folder_emotion(f) for f in EMOTION_FOLDERS.values()} == set(EMOTION_FOLDERS)
