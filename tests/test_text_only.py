"""Text-only corpora (a manifest of text and label, no audio): prepare, split, sample, and
the one-line refusal of speech / fused models."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofuse.cli import main
from emofuse.corpus import read_corpus, read_table
from emofuse.corpus.text_only import (
    MixedAudioWarning,
    NoAudioError,
    audio_status,
    has_audio,
    require_audio,
)
from emofuse.sampling import sample_per_label
from emofuse.splits import assign_split

SENTENCES = {
    "happy": ["오늘 정말 기분이 좋아요", "친구가 선물을 줘서 행복해요", "날씨가 좋아서 신나요"],
    "sad": ["너무 슬퍼서 눈물이 났어요", "비가 와서 우울하네요", "헤어져서 마음이 아파요"],
    "angry": ["왜 이렇게 화가 나는지 모르겠어", "지하철이 또 늦어서 짜증나요", "정말 열받아요"],
}


def text_manifest(path: Path, *, per_label: int = 12, speakers: int = 4) -> Path:
    """A CSV of text, label and speaker (no audio): sentences made distinct by a suffix."""
    rows = []
    for label, sentences in SENTENCES.items():
        for k in range(per_label):
            text = sentences[k % 3] + "!" * (k // 3) + f" {k}번"
            rows.append({"text": text, "label": label, "speaker": f"s{k % speakers}"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_text_only_manifest_is_read_with_empty_audio_and_no_duration(tmp_path):
    manifest = text_manifest(tmp_path / "texts.csv", per_label=4)
    result = read_corpus(manifest, workers=1, progress=False)
    table = result.table
    assert result.problems.empty and len(table) == 12
    assert set(table["audio"]) == {""} and table["duration_s"].isna().all()
    assert list(table["id"][:2]) == ["texts-2", "texts-3"]  # <stem>-<line>
    assert table["script"].str.startswith("t").all()  # a hash of the sentence
    assert result.labels == ["happy", "angry", "sad"]  # the Korean seven's order
    summary = result.summary()
    assert "text-only corpus" in summary and "--modality text" in summary
    assert audio_status(table) == "text-only" and not has_audio(table).any()


def test_text_only_rows_with_problems_are_reported_by_line(tmp_path):
    rows = [
        {"sentence": "좋아요", "emotion": "기쁨", "id": "a"},
        {"sentence": "", "emotion": "기쁨", "id": "b"},  # empty text
        {"sentence": "싫어", "emotion": "", "id": "c"},  # no label
        {"sentence": "싫어요", "emotion": "화남", "id": "a"},  # duplicate id
        {"sentence": "슬퍼요", "emotion": "슬픔", "id": "d"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    result = read_corpus(manifest, workers=1, progress=False)
    assert list(result.table["id"]) == ["a", "d"]
    kinds = result.problems["reason"].str.split(":").str[0]
    found = sorted(zip(result.problems["file"], kinds, strict=True))
    assert found == [
        (f"{manifest}:2", "empty-text"),
        (f"{manifest}:3", "missing-field"),
        (f"{manifest}:4", "duplicate-id"),
    ]


def test_prepare_writes_a_text_only_table_that_reads_back(tmp_path, capsys):
    out = tmp_path / "corpus.parquet"
    code = main(["prepare", str(text_manifest(tmp_path / "t.csv")), "-o", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "36 utterances, 0 problems" in printed and "text-only corpus" in printed
    table, labels = read_table(out)
    assert len(table) == 36 and set(table["audio"]) == {""}
    assert table["duration_s"].isna().all() and labels == ["happy", "angry", "sad"]


@pytest.mark.parametrize("strategy", ["stratified", "script", "speaker"])
def test_split_strategies_work_on_a_text_only_table(tmp_path, strategy):
    table = read_corpus(text_manifest(tmp_path / "t.csv"), workers=1, progress=False).table
    split = assign_split(table, strategy, test_size=0.25, val_size=0.25, seed=0)
    assert len(split) == len(table) and set(split["part"]) == {"train", "val", "test"}
    for column in {"stratified": [], "script": ["script"], "speaker": ["speaker"]}[strategy]:
        parts_per_value = split.groupby(column)["part"].nunique()
        assert (parts_per_value == 1).all(), f"{column} leaks across parts"
    # Every label reaches training.
    assert set(split.loc[split["part"] == "train", "label"]) == set(table["label"])


def test_shortest_first_by_text_length_on_a_text_only_table(tmp_path):
    table = read_corpus(text_manifest(tmp_path / "t.csv"), workers=1, progress=False).table
    picked = sample_per_label(table, 3, order="shortest", by="text_length")
    lengths = table["text"].str.len()
    for label, group in picked.groupby("label"):
        assert group["text"].str.len().max() <= lengths[table["label"] == label].nsmallest(3).max()
    with pytest.raises(ValueError, match="no duration_s.*text_length"):
        sample_per_label(table, 3, order="shortest", by="duration_s")
    # Not told what to measure: a table without durations is measured by its text.
    assert sample_per_label(table, 3, order="shortest")["id"].tolist() == picked["id"].tolist()
    code = main(["sample", str(_parquet(table, tmp_path)), "--per-label", "3", "--order",
                 "shortest", "-o", str(tmp_path / "auto.parquet")])  # fmt: skip
    assert code == 0 and read_table(tmp_path / "auto.parquet")[0]["id"].tolist() == (
        picked["id"].tolist()
    )
    code = main(["sample", str(_parquet(table, tmp_path)), "--per-label", "2", "--order",
                 "longest", "--by", "text", "-o", str(tmp_path / "s.parquet")])  # fmt: skip
    assert code == 0
    longest, _ = read_table(tmp_path / "s.parquet")
    assert len(longest) == 6
    for label, group in longest.groupby("label"):
        top = lengths[table["label"] == label].nlargest(2).min()
        assert group["text"].str.len().min() >= top


def _parquet(table: pd.DataFrame, folder: Path) -> Path:
    from emofuse.corpus import write_table

    return write_table(table, folder / "corpus.parquet")


def test_speech_or_fused_models_refuse_a_text_only_table_in_one_line(tmp_path):
    table = read_corpus(text_manifest(tmp_path / "t.csv"), workers=1, progress=False).table
    assert require_audio(table, "text") is table
    for modality in ("speech", "both"):
        with pytest.raises(NoAudioError, match=f"t.csv has no audio.*--modality {modality}") as err:
            require_audio(table, modality, source="t.csv")
        assert "\n" not in str(err.value) and "--modality text" in str(err.value)


def test_a_mixed_table_is_reported_and_speech_keeps_the_rows_with_audio(tmp_path):
    table = read_corpus(text_manifest(tmp_path / "t.csv"), workers=1, progress=False).table
    table.loc[:4, "audio"] = [str(tmp_path / f"c{i}.wav") for i in range(5)]
    assert audio_status(table) == "mixed"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = require_audio(table, "both")
    assert list(kept.index) == [0, 1, 2, 3, 4]
    assert [w.category for w in caught] == [MixedAudioWarning]
    assert "31 of 36 rows have no audio" in str(caught[0].message)
    assert audio_status(table.iloc[:0]) == "empty" and audio_status(kept) == "audio"
    assert np.array_equal(has_audio(table), np.arange(36) < 5)
