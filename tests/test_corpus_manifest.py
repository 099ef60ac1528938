import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.corpus_fixtures import write_tone

from emofuse.cli import main
from emofuse.corpus import CorpusError, detect_layout, read_corpus, read_table
from emofuse.corpus.fields import text_script_id
from emofuse.corpus.manifest import read_manifest, resolve_columns
from emofuse.sampling import normalize_text


def _wavs(root: Path, n: int) -> list[Path]:
    return [write_tone(root / "audio" / f"clip{i}.wav", 0.2 + 0.1 * i) for i in range(n)]


def test_csv_with_aliases_korean_labels_and_text_scripts(tmp_path):
    wavs = _wavs(tmp_path, 4)
    pd.DataFrame(
        {
            "WAV": ["audio/clip0.wav", "audio/clip1.wav", str(wavs[2]), "audio/clip3.wav"],
            "Transcript": ["오늘  날씨가 좋다", " 오늘 날씨가 좋다", "왜 그래?", "Hello World"],
            "emotion": ["기쁨", "happy", "Sad", "중립"],
            "speaker": ["a", "a", "b", "b"],
            "split": ["Training", "val", "", "test"],
        }
    ).to_csv(tmp_path / "m.csv", index=False)
    assert detect_layout(tmp_path / "m.csv") == "manifest"
    result = read_corpus(tmp_path / "m.csv", workers=1, progress=False)

    assert result.problems.empty
    table = result.table
    assert list(table["label"]) == ["happy", "happy", "sad", "neutral"]
    assert result.labels == ["happy", "sad", "neutral"]
    assert list(table["audio"]) == [str(w) for w in wavs]
    assert list(table["id"]) == ["clip0", "clip1", "clip2", "clip3"]
    assert list(table["source_split"]) == ["train", "validation", "", "test"]
    assert table["duration_s"].tolist() == pytest.approx([0.2, 0.3, 0.4, 0.5], abs=1e-3)
    # Same sentence up to spacing -> same script; different sentences -> different.
    assert table["script"][0] == table["script"][1] != table["script"][2]
    assert table["script"][3] == text_script_id("hello   world ")
    assert "audio <- 'WAV'" in result.summary() and "label <- 'emotion'" in result.summary()


def test_text_script_ids_use_the_sampling_definition_of_the_same_sentence():
    """Script ids hashed from text agree with sampling.normalize_text: readings that differ
    in spacing, case, edge punctuation or Unicode form are one script."""
    same = [
        "오늘 정말 좋아요!",
        " 오늘  정말 좋아요. ",
        unicodedata.normalize("NFD", "오늘 정말 좋아요~"),
    ]
    ids = {text_script_id(t) for t in same}
    assert len(ids) == 1 and next(iter(ids)).startswith("t")
    assert {normalize_text(t) for t in same} == {"오늘 정말 좋아요"}
    assert text_script_id("오늘 정말 싫어요!") not in ids
    assert text_script_id("네, 그래요") != text_script_id("네 그래요")  # inner punctuation counts
    assert text_script_id("  ...  ") == text_script_id("") == ""  # nothing left: no script


def test_own_label_set_is_kept_and_no_text_column_is_allowed(tmp_path):
    _wavs(tmp_path, 3)
    rows = [
        {"path": "audio/clip0.wav", "label": "boredom", "id": "u0"},
        {"path": "audio/clip1.wav", "label": "happy", "id": "u1"},
        {"path": "audio/clip2.wav", "label": "disgust", "id": "u2", "speaker": "s9"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_corpus(tmp_path / "m.jsonl", workers=1, progress=False)
    assert result.problems.empty
    assert result.labels == ["boredom", "disgust", "happy"]
    assert list(result.table["id"]) == ["u0", "u1", "u2"]
    assert set(result.table["text"]) == {""}
    assert list(result.table["speaker"]) == ["", "", "s9"]
    assert "no text column" in result.summary()


def test_bad_manifest_rows_become_problems(tmp_path):
    _wavs(tmp_path, 3)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"not audio at all")
    write_tone(tmp_path / "audio" / "silent.wav", 0.0)
    lines = [
        "audio\ttext\tlabel\tid",
        "audio/clip0.wav\t좋아\t기쁨\ta",
        "audio/clip1.wav\t\t기쁨\tb",  # empty text while the corpus has text
        "audio/clip2.wav\t좋아\t\tc",  # no label
        "audio/nowhere.wav\t좋아\t기쁨\td",
        "audio/broken.wav\t좋아\t기쁨\te",
        "audio/silent.wav\t좋아\t기쁨\tf",
        "audio/clip2.wav\t좋아\t기쁨\ta",  # duplicate id
        "\t좋아\t기쁨\tg",  # no audio, but text: kept as a text-only row
        "\t\t기쁨\th",  # neither audio nor text
    ]
    (tmp_path / "m.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_manifest(tmp_path / "m.tsv", workers=1, progress=False)
    assert list(result.table["id"]) == ["a", "g"]
    assert result.table["audio"][1] == "" and np.isnan(result.table["duration_s"][1])
    assert "mixed corpus: 1 of 2 rows have no audio" in result.summary()
    found = sorted(
        (r.split(":")[0], f)
        for f, r in zip(result.problems["file"], result.problems["reason"], strict=True)
    )
    audio = tmp_path / "audio"
    assert found == sorted(
        [
            ("empty-text", str(audio / "clip1.wav")),
            ("missing-field", str(audio / "clip2.wav")),
            ("missing-field", f"{tmp_path / 'm.tsv'}:10"),
            ("missing-wav", str(audio / "nowhere.wav")),
            ("unreadable-audio", str(audio / "broken.wav")),
            ("empty-audio", str(audio / "silent.wav")),
            ("duplicate-id", str(audio / "clip2.wav")),
        ]
    )
    reasons = " ".join(result.problems["reason"])
    assert "empty 'label' (line 4)" in reasons and "'a' on line 8 and line 2" in reasons


def test_broken_jsonl_lines_and_missing_columns(tmp_path):
    _wavs(tmp_path, 1)
    (tmp_path / "m.jsonl").write_text(
        '{"audio": "audio/clip0.wav", "label": "x", "text": "t"}\n{"audio": \n[1, 2]\n'
    )
    result = read_manifest(tmp_path / "m.jsonl", workers=1, progress=False)
    assert len(result.table) == 1
    assert sorted(result.problems["file"]) == [
        f"{tmp_path / 'm.jsonl'}:2",
        f"{tmp_path / 'm.jsonl'}:3",
    ]
    assert set(result.problems["reason"].str.split(":").str[0]) == {"broken-json"}

    pd.DataFrame({"file": ["audio/clip0.wav"], "words": ["x"]}).to_csv(tmp_path / "n.csv")
    with pytest.raises(CorpusError, match=r"no label column.*emotion"):
        read_manifest(tmp_path / "n.csv")
    pd.DataFrame({"words": ["x"], "label": ["y"]}).to_csv(tmp_path / "o.csv")
    with pytest.raises(CorpusError, match=r"o\.csv: no audio or text column.*transcript"):
        read_manifest(tmp_path / "o.csv")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(CorpusError, match="empty.jsonl: the manifest is empty"):
        read_manifest(tmp_path / "empty.jsonl")


def test_decomposed_hangul_file_names_are_found_from_a_composed_manifest(tmp_path):
    folder = unicodedata.normalize("NFD", "기쁨")
    wav = write_tone(tmp_path / folder / unicodedata.normalize("NFD", "화자1.wav"), 0.3)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "기쁨/화자1.wav", "label": "기쁨", "text": "좋다"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    result = read_manifest(tmp_path / "m.jsonl", workers=1, progress=False)
    assert result.problems.empty
    assert list(result.table["audio"]) == [str(wav)]  # the path that opens
    assert result.table["duration_s"].tolist() == pytest.approx([0.3], abs=1e-3)


def test_non_utf8_jsonl_manifest_is_one_clear_error(tmp_path):
    (tmp_path / "m.jsonl").write_bytes('{"audio": "a.wav", "label": "기쁨"}\n'.encode("cp949"))
    with pytest.raises(CorpusError, match=r"m\.jsonl: not UTF-8 text"):
        read_manifest(tmp_path / "m.jsonl")


def test_resolve_columns_prefers_canonical_names():
    assert resolve_columns(["File", "Emotion", "sentence"]) == {
        "audio": "File", "label": "Emotion", "text": "sentence",
    }  # fmt: skip
    assert resolve_columns(["path", "audio", "label"])["audio"] == "audio"


def test_emodb_manifest(emodb_dir):
    result = read_corpus(emodb_dir / "manifest.csv", workers=2, progress=False)
    table = result.table
    assert result.problems.empty, result.problems.head()
    assert len(table) == 304
    assert set(result.labels) == {"angry", "neutral", "boredom", "happy", "anxious", "sad",
                                  "disgust"}  # fmt: skip
    assert result.labels == sorted(result.labels)  # not the Korean seven: own, sorted order
    assert table["speaker"].nunique() == 6
    assert table["duration_s"].min() == pytest.approx(1.44, abs=0.01)
    assert table["duration_s"].max() == pytest.approx(8.98, abs=0.01)
    assert table["id"].is_unique and table["audio"].map(lambda a: Path(a).is_file()).all()
    # Ten sentences, every one read in every emotion: ten scripts from the text hash.
    assert table["script"].nunique() == 10
    assert table.groupby("script")["label"].nunique().min() >= 5


def test_cli_prepare_manifest(emodb_dir, tmp_path, capsys):
    out = tmp_path / "emodb.parquet"
    assert main(["prepare", str(emodb_dir / "manifest.csv"), "-o", str(out), "--quiet"]) == 0
    assert "304 utterances, 0 problems" in capsys.readouterr().out
    table, labels = read_table(out)
    assert len(table) == 304 and "boredom" in labels


def test_a_label_set_turns_stray_labels_into_problems(tmp_path):
    rows = []
    for i, label in enumerate(["기쁨", "슬픔", "happy", "슬픔ㅁ", "boredom"]):
        wav = tmp_path / f"c{i}.wav"
        write_tone(wav, 0.1, frequency_hz=200.0 + 10 * i)  # distinct clips
        rows.append(f"{wav.name},문장 {i},{label}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio,text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")

    own = read_corpus(manifest, progress=False)
    assert len(own.table) == 5 and "boredom" in own.labels  # the corpus's own set by default

    held = read_corpus(manifest, progress=False, labels="korean")
    assert sorted(held.table["label"]) == ["happy", "happy", "sad"]
    assert held.labels == ["happy", "sad"]
    reasons = held.problems["reason"].tolist()
    assert len(reasons) == 2 and all(r.startswith("unknown-label:") for r in reasons)
    assert {Path(f).name for f in held.problems["file"]} == {"c3.wav", "c4.wav"}

    listed = read_corpus(manifest, progress=False, labels="boredom, happy")
    assert listed.labels == ["boredom", "happy"]
    assert len(listed.table) == 2
