import pandas as pd
import pytest

from emofuse.corpus.table import CorpusTableError, read_table, validate_table, write_table


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b"],
            "audio": ["/x/a.wav", "/x/b.wav"],
            "text": ["안녕하세요", None],
            "label": ["boredom", "disgust"],
            "speaker": ["s1", "s2"],
            "script": ["1", "2"],
            "duration_s": [1.5, 2],
            "source_split": ["", ""],
            "part": ["train", "test"],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_keeps_rows_extra_columns_and_label_order(tmp_path, suffix):
    path = write_table(_table(), tmp_path / f"corpus{suffix}", labels=["disgust", "boredom"])
    table, labels = read_table(path)
    assert labels == ["disgust", "boredom"]
    assert list(table["id"]) == ["a", "b"]
    assert table.loc[1, "text"] == ""
    assert list(table["part"]) == ["train", "test"]
    assert table["duration_s"].dtype == "float64"


def test_missing_columns_and_duplicate_ids_are_refused():
    with pytest.raises(CorpusTableError, match="missing columns.*speaker"):
        validate_table(_table().drop(columns=["speaker"]))
    dup = _table()
    dup.loc[1, "id"] = "a"
    with pytest.raises(CorpusTableError, match="duplicate utterance ids"):
        validate_table(dup)


def test_read_missing_table_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="emofuse prepare"):
        read_table(tmp_path / "nope.parquet")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_unknown_duration_round_trips_as_nan(tmp_path, suffix):
    table = _table()
    table.loc[1, "duration_s"] = float("nan")
    back, _ = read_table(write_table(table, tmp_path / f"corpus{suffix}"))
    assert back.loc[0, "duration_s"] == 1.5
    assert pd.isna(back.loc[1, "duration_s"])


def test_non_numeric_duration_names_the_table():
    table = _table().astype({"duration_s": object})
    table.loc[1, "duration_s"] = "two seconds"
    with pytest.raises(CorpusTableError, match=r"corpus\.csv: 1 rows .*'two seconds'"):
        validate_table(table, source="corpus.csv")
