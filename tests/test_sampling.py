"""Sampling: N per label, random / shortest / longest first, text de-duplication —
on synthetic tables and on real EmoDB durations and sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emofuse.cli import main
from emofuse.corpus.table import read_table, validate_table, write_table
from emofuse.sampling import (
    SamplingShortfallWarning,
    dedupe_text,
    longest_first,
    normalize_text,
    random_first,
    sample_per_label,
    sample_train_part,
    sampling_summary,
    shortest_first,
)


def synthetic(n_per_label: dict[str, int], *, seed: int = 0) -> pd.DataFrame:
    """Clips with random durations and sentences that repeat with noisy punctuation."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in n_per_label.items():
        for i in range(n):
            sentence = f"{label} 문장 {i % 4}번"
            noise = ["", ".", "!", "  ", " ~"][i % 5]
            rows.append(
                {
                    "id": f"{label}_{i:03d}",
                    "audio": f"/x/{label}_{i:03d}.wav",
                    "text": (sentence + noise).replace(" ", "  " if i % 3 == 0 else " "),
                    "label": label,
                    "speaker": f"spk{i % 7}",
                    "script": f"{label}{i % 4}",
                    "duration_s": float(np.round(rng.uniform(0.5, 9.0), 1)),  # many ties
                    "source_split": "",
                }
            )
    return validate_table(pd.DataFrame(rows))


# ----------------------------------------------------------------------- normalize_text


def test_normalize_text_treats_spacing_case_and_edge_punctuation_as_the_same_sentence():
    assert normalize_text("오늘 정말  기분이 좋아요!") == normalize_text(
        " 오늘 정말 기분이 좋아요."
    )
    assert normalize_text("좋아요~") == normalize_text("좋아요") == "좋아요"
    assert normalize_text("Der Lappen liegt.") == "der lappen liegt"
    assert normalize_text("「안녕」？") == "안녕"
    # decomposed Hangul jamo (NFD) and precomposed syllables are one sentence
    import unicodedata

    assert normalize_text(unicodedata.normalize("NFD", "한국어")) == "한국어"
    # punctuation inside the sentence changes it
    assert normalize_text("네, 그래요") != normalize_text("네 그래요")
    assert normalize_text(None) == normalize_text(float("nan")) == normalize_text("  ...  ") == ""


@given(st.text())
def test_normalize_text_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


# ------------------------------------------------------------------------- de-duplication


def test_dedupe_keeps_exactly_one_row_per_normalised_text_and_keeps_empty_texts():
    table = synthetic({"happy": 20, "sad": 12})
    table.loc[[0, 1, 2], "text"] = ""  # no transcript: never merged
    out = dedupe_text(table, seed=3)
    keys = out["text"].map(normalize_text)
    nonempty = keys[keys != ""]
    assert nonempty.is_unique
    expected = set(table["text"].map(normalize_text)) - {""}
    assert set(nonempty) == expected
    assert (keys == "").sum() == 3
    assert list(out.columns) == list(table.columns)
    assert list(out.index) == list(range(len(out)))
    # the kept rows keep their original relative order
    positions = table.reset_index().set_index("id").loc[out["id"], "index"]
    assert positions.is_monotonic_increasing


def test_dedupe_choice_is_seeded():
    table = synthetic({"happy": 40, "sad": 40})
    a = dedupe_text(table, seed=1)["id"].tolist()
    assert a == dedupe_text(table, seed=1)["id"].tolist()
    others = {tuple(dedupe_text(table, seed=s)["id"]) for s in range(2, 8)}
    assert any(other != tuple(a) for other in others)


# --------------------------------------------------------------------------- sampling


def test_shortest_and_longest_take_the_extremes_of_each_label():
    table = synthetic({"happy": 30, "sad": 25, "angry": 18})
    short = shortest_first(table, 5, seed=0)
    long = longest_first(table, 5, seed=0)
    for label, group in table.groupby("label"):
        durations = np.sort(group["duration_s"].to_numpy())
        got_short = np.sort(short.loc[short["label"] == label, "duration_s"].to_numpy())
        got_long = np.sort(long.loc[long["label"] == label, "duration_s"].to_numpy())
        np.testing.assert_array_equal(got_short, durations[:5])
        np.testing.assert_array_equal(got_long, durations[-5:])
        # shortest-first lists them in ascending order
        assert short.loc[short["label"] == label, "duration_s"].is_monotonic_increasing


def test_ties_are_broken_by_the_seed_and_reproducibly():
    table = synthetic({"happy": 60})
    table["duration_s"] = 1.0  # every clip ties
    a = shortest_first(table, 10, seed=0)["id"].tolist()
    assert a == shortest_first(table, 10, seed=0)["id"].tolist()
    assert a != shortest_first(table, 10, seed=1)["id"].tolist()


def test_random_order_is_seeded_and_counts_are_per_label():
    table = synthetic({"happy": 30, "sad": 30, "angry": 30})
    a = random_first(table, 7, seed=5)
    assert a["label"].value_counts().to_dict() == {"angry": 7, "happy": 7, "sad": 7}
    assert a["id"].tolist() == random_first(table, 7, seed=5)["id"].tolist()
    assert set(a["id"]) != set(random_first(table, 7, seed=6)["id"])
    assert a["id"].is_unique
    assert list(a.columns) == list(table.columns)


def test_a_short_label_gives_all_it_has_with_a_warning():
    table = synthetic({"happy": 30, "disgust": 4})
    with pytest.warns(SamplingShortfallWarning, match="'disgust' has only 4"):
        out = sample_per_label(table, 10, order="random")
    assert out["label"].value_counts().to_dict() == {"happy": 10, "disgust": 4}
    assert out.attrs["shortfall"] == {"disgust": 4}


def test_per_label_none_takes_everything_in_order():
    table = synthetic({"happy": 9, "sad": 6})
    out = longest_first(table, None)
    assert len(out) == len(table)
    for _, group in out.groupby("label"):
        assert group["duration_s"].is_monotonic_decreasing


def test_dedupe_first_then_sample():
    table = synthetic({"happy": 40, "sad": 40})  # 4 sentences per label
    with pytest.warns(SamplingShortfallWarning):
        out = sample_per_label(table, 10, dedupe_text=True, seed=2)
    assert out["label"].value_counts().to_dict() == {"happy": 4, "sad": 4}
    assert out["text"].map(normalize_text).is_unique


def test_a_label_emptied_by_dedupe_is_reported_as_zero():
    table = synthetic({"happy": 1, "sad": 1})
    table["text"] = ["같은 문장", "같은 문장!"]  # one sentence under two labels
    with pytest.warns(SamplingShortfallWarning, match="has only 0 after de-duplication"):
        out = sample_per_label(table, 1, dedupe_text=True)
    assert len(out) == 1
    lost = "sad" if out.loc[0, "label"] == "happy" else "happy"
    assert out.attrs["shortfall"] == {lost: 0}
    assert (out.attrs["rows_before_dedupe"], out.attrs["rows_after_dedupe"]) == (2, 1)


def test_text_length_orders_text_only_corpora():
    table = synthetic({"happy": 5})
    table["text"] = ["a", "bbbbbb", "cc", "ddddd", "eee"]
    table["duration_s"] = np.nan
    out = shortest_first(table, 2, by="text_length")
    assert out["text"].tolist() == ["a", "cc"]
    with pytest.raises(ValueError, match="no duration_s.*text_length"):
        shortest_first(table, 2, by="duration_s")
    # Not told what to measure, a table without durations is measured by its text (H6).
    assert shortest_first(table, 2)["text"].tolist() == ["a", "cc"]


def test_bad_arguments_are_refused():
    table = synthetic({"happy": 5})
    with pytest.raises(ValueError, match="order must be one of"):
        sample_per_label(table, 2, order="middle")
    with pytest.raises(ValueError, match="by must be one of"):
        sample_per_label(table, 2, order="shortest", by="loudness")
    with pytest.raises(ValueError, match="positive integer"):
        sample_per_label(table, 0)
    with pytest.raises(ValueError, match="no label column"):
        sample_per_label(table.drop(columns=["label"]), 2)


def test_sampling_summary_counts_and_durations():
    table = synthetic({"happy": 6, "sad": 3})
    summary = sampling_summary(table)
    assert summary.loc["happy", "count"] == 6
    sad = table[table["label"] == "sad"]["duration_s"]
    assert summary.loc["sad", "total_duration_s"] == pytest.approx(sad.sum())
    assert summary.loc["sad", "mean_duration_s"] == pytest.approx(sad.mean())
    assert summary.loc["happy", "texts"] == 4


# -------------------------------------------------------------------------- real EmoDB


def test_emodb_shortest_and_longest_first_on_real_durations(emodb_table):
    short = shortest_first(emodb_table, 8)
    long = longest_first(emodb_table, 8)
    assert short["label"].value_counts().min() == 8 == long["label"].value_counts().max()
    for label, group in emodb_table.groupby("label"):
        ranked = np.sort(group["duration_s"].to_numpy())
        picked_short = short.loc[short["label"] == label, "duration_s"]
        picked_long = long.loc[long["label"] == label, "duration_s"]
        assert picked_short.max() <= ranked[7] + 1e-9
        assert picked_long.min() >= ranked[-8] - 1e-9
    # real speech: the longest clips are much longer than the shortest
    assert long["duration_s"].mean() > 2 * short["duration_s"].mean()


def test_emodb_dedupe_leaves_its_ten_sentences(emodb_table):
    out = dedupe_text(emodb_table)
    assert len(out) == emodb_table["script"].nunique() == 10
    assert out["script"].is_unique  # one sentence per script code, as the corpus says


# --------------------------------------------------------------------------------- CLI


def test_cli_sample_writes_the_table_and_prints_the_summary(tmp_path, capsys):
    corpus = write_table(
        synthetic({"sad": 20, "happy": 3}), tmp_path / "c.parquet", ["sad", "happy"]
    )
    out = tmp_path / "s.parquet"
    code = main(["sample", str(corpus), "--per-label", "5", "--order", "longest", "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "'happy' has only 3" in printed and "total_duration_s" in printed
    assert "de-duplicated" not in printed
    table, labels = read_table(out)
    assert labels == ["sad", "happy"]
    assert table["label"].value_counts().to_dict() == {"sad": 5, "happy": 3}


def test_cli_sample_reports_a_missing_corpus(tmp_path, capsys):
    code = main(["sample", str(tmp_path / "nope.parquet"), "--per-label", "5", "-o", "x.parquet"])
    assert code == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_cli_sample_on_a_split_table_samples_only_the_train_part(tmp_path, capsys):
    table = synthetic({"sad": 24, "happy": 24}, seed=3)
    table["part"] = np.array(["train", "train", "val", "test"])[np.arange(len(table)) % 4]
    split = write_table(table, tmp_path / "split.parquet", ["sad", "happy"])
    out = tmp_path / "s.parquet"
    code = main(["sample", str(split), "--per-label", "4", "--order", "longest", "-o", str(out)])
    assert code == 0
    assert "passed through unchanged" in capsys.readouterr().out
    sampled, _ = read_table(out)
    train = sampled[sampled["part"] == "train"]
    assert train["label"].value_counts().to_dict() == {"sad": 4, "happy": 4}
    assert set(train["id"]) <= set(table.loc[table["part"] == "train", "id"])
    # val and test are the split's, whole and unsampled (not the longest clips of all parts)
    for part in ("val", "test"):
        kept = sampled.loc[sampled["part"] == part, "id"]
        assert sorted(kept) == sorted(table.loc[table["part"] == part, "id"])


# -------------------------------------------------------------------- sample_train_part


def _with_parts(table: pd.DataFrame) -> pd.DataFrame:
    parts = np.array(["train", "train", "val", "test"])[np.arange(len(table)) % 4]
    return table.assign(part=parts)


def test_sample_train_part_samples_train_rows_and_keeps_the_others_unchanged():
    table = _with_parts(synthetic({"happy": 40, "sad": 30}))
    out = sample_train_part(table, 3, order="shortest", seed=1)
    train = out[out["part"] == "train"]
    assert train["label"].value_counts().to_dict() == {"happy": 3, "sad": 3}
    expected = sample_per_label(table[table["part"] == "train"], 3, order="shortest", seed=1)
    assert train["id"].tolist() == expected["id"].tolist()
    others = out[out["part"] != "train"].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, table[table["part"] != "train"].reset_index(drop=True))


def test_sample_train_part_without_part_column_samples_the_whole_table():
    table = synthetic({"happy": 10, "sad": 10})
    out = sample_train_part(table, 2, seed=3)
    assert out["id"].tolist() == sample_per_label(table, 2, seed=3)["id"].tolist()


def test_sample_train_part_reports_shortfall_of_the_train_part_only():
    table = _with_parts(synthetic({"happy": 8, "sad": 8}))  # 4 train rows per label
    with pytest.warns(SamplingShortfallWarning):
        out = sample_train_part(table, 6)
    assert out.attrs["shortfall"] == {"happy": 4, "sad": 4}
    assert len(out) == len(table)


def test_sample_train_part_without_train_rows_is_an_error():
    table = synthetic({"happy": 4}).assign(part="test")
    with pytest.raises(ValueError, match="part == 'train'"):
        sample_train_part(table, 2)


# ------------------------------------------------------- diverse and speaker-balanced


def test_diverse_spreads_over_the_vector_space_within_each_label():
    """Two tight clusters per label, one of them far more populous: random picks land in
    the big cluster, diverse picks cover both."""
    rng = np.random.default_rng(0)
    table = synthetic({"happy": 40, "sad": 40})
    centre = np.where(np.arange(80) % 40 < 36, 0.0, 50.0)  # 36 near 0, 4 near 50
    vectors = np.column_stack([centre + rng.normal(0, 1, 80), rng.normal(0, 1, 80)])
    out = sample_per_label(table, 2, order="diverse", vectors=vectors, seed=4)
    picked = vectors[table.reset_index().set_index("id").loc[out["id"], "index"], 0]
    for label in ("happy", "sad"):
        values = picked[(out["label"] == label).to_numpy()]
        assert values.min() < 25 < values.max()
    again = sample_per_label(table, 2, order="diverse", vectors=vectors, seed=4)
    assert again["id"].tolist() == out["id"].tolist()


def test_k_center_order_picks_the_farthest_point_each_time():
    from emofuse.sampling import k_center_order

    points = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    # 0, then 10 (farthest), then 4 and 6 tie at distance 4: the earlier row (4) wins,
    # then 6 (2 from 4), then 1
    assert k_center_order(points).tolist() == [0, 2, 3, 4, 1]
    assert k_center_order(points, 2).tolist() == [0, 2]


def test_diverse_needs_aligned_vectors_and_follows_deduplication():
    table = synthetic({"happy": 12})
    with pytest.raises(ValueError, match="needs vectors"):
        sample_per_label(table, 2, order="diverse")
    with pytest.raises(ValueError, match="one row per table row"):
        sample_per_label(table, 2, order="diverse", vectors=np.zeros((3, 2)))
    ignored = sample_per_label(table, 2, vectors=np.zeros((3, 2)), seed=5)  # not read
    assert ignored["id"].tolist() == sample_per_label(table, 2, seed=5)["id"].tolist()
    vectors = np.arange(24, dtype=float).reshape(12, 2)
    out = sample_per_label(table, None, order="diverse", vectors=vectors, dedupe_text=True)
    assert len(out) == 4  # 4 distinct sentences survive; vectors were filtered with them


def test_speaker_balanced_takes_turns_over_speakers():
    table = synthetic({"happy": 30, "sad": 30})  # speakers spk0..spk6 (i % 7)
    out = sample_per_label(table, 7, order="speaker-balanced", seed=2)
    for label in ("happy", "sad"):
        assert out.loc[out["label"] == label, "speaker"].nunique() == 7
    skewed = table.assign(speaker=np.where(np.arange(60) % 30 < 27, "a", "b"))
    few = sample_per_label(skewed, 4, order="speaker-balanced", seed=0)
    assert (few["speaker"] == "b").sum() == 4  # two per label, although b has 3 of 30
    random_pick = sample_per_label(skewed, 4, seed=0)
    assert (random_pick["speaker"] == "b").sum() < 4


def test_sample_train_part_passes_vectors_of_the_train_rows():
    table = _with_parts(synthetic({"happy": 20, "sad": 20}))
    vectors = np.random.default_rng(1).normal(size=(40, 3))
    out = sample_train_part(table, 3, order="diverse", vectors=vectors, seed=1)
    train = table["part"] == "train"
    expected = sample_per_label(
        table[train], 3, order="diverse", vectors=vectors[train.to_numpy()], seed=1
    )
    assert out.loc[out["part"] == "train", "id"].tolist() == expected["id"].tolist()
