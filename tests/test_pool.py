"""An unlabelled pool (emofuse.corpus.pool): read by the manifest's rules except that a
label may be absent; the same manifest gives the same ids here and in `prepare`."""

from pathlib import Path

import pandas as pd
import pytest
from support.corpus_fixtures import write_tone

from emofuse.cli import main
from emofuse.corpus import COLUMNS, CorpusError, read_table
from emofuse.corpus.manifest import read_manifest
from emofuse.corpus.pool import Pool, read_pool


def _pool_csv(tmp_path: Path, **overrides: list[str]) -> Path:
    """A pool of four clips: two share a stem outside the manifest's folder, one lives below
    it, one is named by a relative path; extra columns `call` and `note`."""
    data = tmp_path / "data"
    a = write_tone(data / "day1" / "x.wav", 0.2)
    b = write_tone(data / "day2" / "x.wav", 0.3)
    write_tone(tmp_path / "pool" / "clips" / "y.wav", 0.4)
    write_tone(tmp_path / "pool" / "clips" / "sub" / "x.wav", 0.5)
    columns = {
        "Wav": [str(a), str(b), "clips/y.wav", "clips/sub/x.wav"],
        "transcript": ["좋아요", "싫어요", "그래요", "몰라요"],
        "spk": ["s1", "s1", "s2", "s2"],
        "call": ["c1", "c2", "c3", "c4"],
        "note": ["", "loud", "", "quiet"],
        **overrides,
    }
    path = tmp_path / "pool" / "pool.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_a_pool_without_a_label_column(tmp_path):
    pool = read_pool(_pool_csv(tmp_path))
    assert isinstance(pool, Pool) and pool.problems.empty
    assert list(pool.table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert pool.table["label"].tolist() == ["", "", "", ""] and pool.labels == []
    assert pool.table["speaker"].tolist() == ["s1", "s1", "s2", "s2"]
    assert pool.table["duration_s"].tolist() == pytest.approx([0.2, 0.3, 0.4, 0.5], abs=1e-3)
    assert pool.table["id"].tolist() == ["day1/x", "day2/x", "y", "clips/sub/x"]
    assert pool.source == (tmp_path / "pool" / "pool.csv")
    # the pool's own columns, aligned by row: what `suggest` writes back out
    assert pool.original["call"].tolist() == ["c1", "c2", "c3", "c4"]
    assert list(pool.extra.columns) == ["call", "note"]
    assert pool.extra["note"].tolist() == ["", "loud", "", "quiet"]
    assert pool.columns["audio"] == "Wav" and pool.columns["text"] == "transcript"
    assert "4 clips, 0 already labelled" in pool.summary()


def test_row_looks_a_clip_up_by_id_only(tmp_path):
    pool = read_pool(_pool_csv(tmp_path))
    row = pool.row("day2/x")
    assert row["audio"] == str(tmp_path / "data" / "day2" / "x.wav")
    assert row["text"] == "싫어요" and row["label"] == ""
    assert isinstance(row["duration_s"], float)
    for hostile in ["x", str(tmp_path / "data" / "day2" / "x.wav"), "../../etc/passwd", ""]:
        with pytest.raises(KeyError, match="no clip with id"):
            pool.row(hostile)


def test_labels_given_in_the_pool_are_kept(tmp_path):
    pool = read_pool(_pool_csv(tmp_path, emotion=["기쁨", "", " ", "sad"]))
    assert pool.table["label"].tolist() == ["happy", "", "", "sad"]
    assert pool.labels == ["happy", "sad"]
    assert pool.labelled.tolist() == [True, False, False, True]
    assert "2 already labelled" in pool.summary()


def test_a_text_only_pool(tmp_path):
    path = tmp_path / "texts.tsv"
    path.write_text("sentence\tcall\n오늘 좋아요\ta\n\tb\n내일 싫어요\tc\n", encoding="utf-8")
    pool = read_pool(path)
    assert pool.table["audio"].tolist() == ["", ""]
    assert pool.table["text"].tolist() == ["오늘 좋아요", "내일 싫어요"]
    assert pool.table["id"].tolist() == ["texts-2", "texts-4"]
    assert pool.extra["call"].tolist() == ["a", "c"]  # row 3 (empty text) left out
    assert pool.problems["reason"].str.startswith("empty-text").tolist() == [True]


def test_rows_that_cannot_be_used_are_problems(tmp_path):
    path = _pool_csv(tmp_path, id=["k1", "k2", "k1", ""])
    Path(tmp_path / "pool" / "clips" / "y.wav").unlink()
    pool = read_pool(path)
    assert pool.table["id"].tolist() == ["k1", "k2", "x"]
    kinds = sorted(pool.problems["reason"].str.split(":").str[0])
    assert kinds == ["missing-wav"]  # y.wav gone (its duplicate id is never reached)
    path = _pool_csv(tmp_path, id=["k1", "k2", "k1", ""])
    pool = read_pool(path)
    assert pool.table["id"].tolist() == ["k1", "k2", "x"]
    assert pool.problems["reason"].str.startswith("duplicate-id").tolist() == [True]


def test_a_pool_without_audio_or_text_is_refused(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"speaker": ["a"], "call": ["c"]}).to_csv(path, index=False)
    with pytest.raises(CorpusError, match="no audio or text column"):
        read_pool(path)
    with pytest.raises(CorpusError, match="no such manifest"):
        read_pool(tmp_path / "absent.csv")
    (tmp_path / "p.txt").write_text("audio\nx.wav\n")
    with pytest.raises(CorpusError, match="a manifest must be .*parquet"):
        read_pool(tmp_path / "p.txt")


def test_prepare_keeps_its_rule_that_a_clip_has_a_label(tmp_path):
    path = _pool_csv(tmp_path)
    with pytest.raises(CorpusError, match="no label column"):
        read_manifest(path, workers=1, progress=False)
    path = _pool_csv(tmp_path, label=["happy", "", "sad", "happy"])
    result = read_manifest(path, workers=1, progress=False)
    assert len(result.table) == 3
    assert result.problems["reason"].str.startswith("missing-field").tolist() == [True]


def test_the_same_manifest_gives_the_same_ids_to_pool_and_prepare(tmp_path):
    """Answers are keyed on pool ids: they must name the clips `prepare` makes, also when
    stems collide, when some rows have no label yet, and when the manifest names ids."""
    for given in (["", "", "", ""], ["", "mine", "", ""]):
        labels = ["happy", "", "sad", "happy"]
        path = _pool_csv(tmp_path, label=labels, id=given)
        pool = read_pool(path)
        out = tmp_path / "c.parquet"
        assert main(["prepare", str(path), "-o", str(out), "--quiet", "--workers", "1"]) == 0
        prepared, _ = read_table(out)
        pool_ids = dict(zip(pool.table["audio"], pool.table["id"], strict=True))
        assert len(prepared) == 3
        for audio, ident in zip(prepared["audio"], prepared["id"], strict=True):
            assert pool_ids[audio] == ident
        assert "day1/x" in set(prepared["id"])  # day2/x (unlabelled) still made it collide


def test_a_parquet_pool_reads_like_its_csv(tmp_path):
    path = _pool_csv(tmp_path, label=["happy", "", "sad", ""])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["score"] = [0.5, None, 1.0, 2.0]  # a column that is not text
    frame.to_parquet(path.with_suffix(".parquet"))
    from_csv, from_parquet = read_pool(path), read_pool(path.with_suffix(".parquet"))
    columns = list(COLUMNS)
    pd.testing.assert_frame_equal(from_csv.table[columns], from_parquet.table[columns])
    assert from_parquet.extra["score"].tolist() == ["0.5", "", "1.0", "2.0"]


def test_prepare_still_refuses_a_parquet_manifest(tmp_path):
    path = _pool_csv(tmp_path, label=["happy", "sad", "sad", "happy"])
    pd.read_csv(path).to_parquet(path.with_suffix(".parquet"))
    with pytest.raises(CorpusError, match="a manifest must be"):
        read_manifest(path.with_suffix(".parquet"))


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    path = tmp_path / "pool.parquet"
    path.write_bytes(b"audio,text\nx.wav,hi\n")
    with pytest.raises(CorpusError, match=r"pool\.parquet: cannot read it as Parquet"):
        read_pool(path)
