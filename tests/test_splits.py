"""Splits: every strategy on a synthetic Korean-like corpus (many speakers reading the
same scripts), the leakage report, cross-validation folds, real EmoDB, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofuse.cli import main
from emofuse.corpus.table import read_table, validate_table, write_table
from emofuse.sampling import normalize_text
from emofuse.splits import (
    SPLIT_STRATEGIES,
    SplitError,
    assign_split,
    cross_validation_folds,
    leakage_report,
)

KOREAN = {"happy": "기쁨", "sad": "슬픔", "angry": "분노", "anxious": "불안"}


def korean_like(n_speakers: int = 30, scripts_per_label: int = 6, *, seed: int = 0) -> pd.DataFrame:
    """Every speaker reads (most of) the same scripts in every emotion, with noisy
    punctuation, plus the two traps a script split must survive: one sentence filed
    under two script ids, and one script id used for two sentences."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for label, korean in KOREAN.items():
            for j in range(scripts_per_label):
                if rng.random() < 0.25:  # not every speaker reads every script
                    continue
                script = f"{label}-{j}"
                text = f"{korean} 대본 {j}번 문장" + ["", ".", "!", " ~"][s % 4]
                if script == "happy-0" and s % 2:
                    script = "happy-0b"  # same sentence, second id
                if script == "sad-1" and s % 3 == 0:
                    text = "슬픔 대본 2번 문장?"  # id sad-1 also used for sad-2's sentence
                rows.append(
                    {
                        "id": f"{s:03d}_{label}_{j}",
                        "audio": f"/x/{s:03d}_{label}_{j}.wav",
                        "text": text,
                        "label": label,
                        "speaker": f"spk{s:03d}",
                        "script": script,
                        "duration_s": float(rng.uniform(1, 6)),
                        "source_split": "validation" if s % 5 == 0 else "train",
                    }
                )
    return validate_table(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return korean_like()


def label_shares(table: pd.DataFrame) -> pd.DataFrame:
    return pd.crosstab(table["part"], table["label"], normalize="index")


# ------------------------------------------------------------------------ assign_split


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
def test_every_strategy_gives_train_val_test_and_keeps_columns(corpus, strategy):
    out = assign_split(corpus, strategy, seed=0)
    assert set(out["part"]) == {"train", "val", "test"}
    assert list(out.columns) == [*corpus.columns, "part"]
    assert out.index.isin(corpus.index).all()
    assert (out["id"].to_numpy() == corpus.loc[out.index, "id"].to_numpy()).all()


def test_stratified_keeps_label_proportions_exactly_per_label(corpus):
    out = assign_split(corpus, "stratified", test_size=0.2, val_size=0.1, seed=3)
    for _, group in out.groupby("label"):
        n = len(group)
        assert (group["part"] == "test").sum() == round(n * 0.2)
        assert (group["part"] == "val").sum() == round(n * 0.1)
    # a random split leaks both people and sentences: the report must see it
    report = leakage_report(out)
    assert report.shared_speakers > 0 and report.shared_texts > 0
    assert not report.is_clean("speaker") and not report.is_clean("script")


def test_speaker_split_shares_no_person_and_keeps_labels_balanced(corpus):
    out = assign_split(corpus, "speaker", seed=1)
    report = leakage_report(out)
    assert report.shared_speakers == 0 and report.is_clean("speaker")
    per_part = out.groupby("part")["speaker"].apply(set)
    assert not (per_part["train"] & per_part["test"]) and not (per_part["val"] & per_part["test"])
    shares = out["part"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.05)
    assert shares["val"] == pytest.approx(0.1, abs=0.05)
    overall = corpus["label"].value_counts(normalize=True)
    for part, row in label_shares(out).iterrows():
        assert (row - overall[row.index]).abs().max() < 0.06, part


def test_script_split_shares_no_sentence_even_across_aliased_ids(corpus):
    out = assign_split(corpus, "script", seed=2)
    report = leakage_report(out)
    assert report.shared_texts == 0 and report.is_clean("script")
    # no script id in two parts, and the two ids of one sentence land together
    assert (out.groupby("script")["part"].nunique() == 1).all()
    parts = out.groupby("script")["part"].first()
    assert parts["happy-0"] == parts["happy-0b"]
    assert parts["sad-1"] == parts["sad-2"]  # linked through a shared sentence
    # ...which a split by script id alone would have leaked
    texts = out.assign(key=out["text"].map(normalize_text)).groupby("key")["part"].nunique()
    assert (texts == 1).all()


def test_speaker_plus_script_drops_crossed_clips_and_leaks_neither(corpus):
    out = assign_split(corpus, "speaker+script", test_size=0.2, val_size=0.1, seed=4)
    report = leakage_report(out)
    assert report.is_clean("speaker+script")
    assert report.shared_speakers == 0 and report.shared_texts == 0
    dropped = out.attrs["dropped_rows"]
    assert dropped == len(corpus) - len(out) > 0
    assert f"{dropped} of {len(corpus)}" in out.attrs["split_notes"][0]
    # sqrt-fraction assignment keeps the requested proportions among the kept clips
    shares = out["part"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.1)
    assert shares["train"] > shares["test"] > shares["val"] > 0


def test_speaker_plus_script_drops_nothing_when_speakers_read_their_own_scripts():
    table = korean_like(n_speakers=20)
    table["script"] = table["speaker"] + "/" + table["script"]
    table["text"] = table["speaker"] + " " + table["text"]
    out = assign_split(table, "speaker+script", seed=0)
    assert out.attrs["dropped_rows"] == 0 and len(out) == len(table)
    assert leakage_report(out).is_clean("speaker+script")


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
def test_seeds_reproduce_and_differ(corpus, strategy):
    a = assign_split(corpus, strategy, seed=7)["part"]
    assert a.equals(assign_split(corpus, strategy, seed=7)["part"])
    b = assign_split(corpus, strategy, seed=8)["part"]
    assert not (a.index.equals(b.index) and a.equals(b))


def test_corpus_strategy_follows_the_corpus_split(corpus):
    out = assign_split(corpus, "corpus", val_size=0.1, seed=0)
    own = corpus.loc[out.index, "source_split"]
    assert (out.loc[own == "validation", "part"] == "test").all()
    assert set(out.loc[own == "train", "part"]) == {"train", "val"}
    assert (out["part"] == "val").sum() == pytest.approx(0.1 * len(corpus), abs=4)
    with pytest.raises(SplitError, match="no source_split"):
        assign_split(corpus.assign(source_split=""), "corpus")
    with pytest.raises(SplitError, match="expected train, validation or test"):
        assign_split(corpus.assign(source_split="dev"), "corpus")


def test_clear_errors_for_impossible_splits(corpus):
    with pytest.raises(SplitError, match="no speaker column values; use stratified or script"):
        assign_split(corpus.assign(speaker=""), "speaker")
    with pytest.raises(SplitError, match="no speaker column values"):
        assign_split(corpus.assign(speaker=""), "speaker+script")
    few = corpus[corpus["speaker"].isin(["spk000", "spk001"])]
    with pytest.raises(SplitError, match="only 2 speakers for 3 parts"):
        assign_split(few, "speaker")
    assert set(assign_split(few, "speaker", val_size=0)["part"]) == {"train", "test"}
    with pytest.raises(SplitError, match="unknown split strategy"):
        assign_split(corpus, "by-moon-phase")
    with pytest.raises(SplitError, match="leaves nothing to train on"):
        assign_split(corpus, "stratified", test_size=0.6, val_size=0.5)


# ---------------------------------------------------------------------- leakage report


def test_leakage_report_counts_match_a_direct_count(corpus):
    out = assign_split(corpus, "stratified", seed=0)
    report = leakage_report(out)
    speakers = out.groupby("speaker")["part"].nunique()
    keys = out.assign(key=out["text"].map(normalize_text)).groupby("key")["part"].nunique()
    assert report.shared_speakers == (speakers > 1).sum()
    assert report.shared_texts == (keys > 1).sum()
    assert report.sizes == out["part"].value_counts().to_dict()
    assert (
        report.label_counts["test"]["happy"]
        == ((out.part == "test") & (out.label == "happy")).sum()
    )
    pair = next(p for p in report.pairs if p.parts == ("train", "test"))
    assert pair.shared_speakers == len(
        set(out.loc[out.part == "train", "speaker"]) & set(out.loc[out.part == "test", "speaker"])
    )
    as_dict = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert as_dict["shared_texts"] == report.shared_texts
    text = report.to_text()
    for word in ("train", "val", "test", "happy", "train/test", "verdict"):
        assert word in text


def test_leakage_report_without_speaker_column_says_it_cannot_check(corpus):
    out = assign_split(corpus, "script", seed=0).drop(columns=["speaker"])
    report = leakage_report(out)
    assert report.is_clean("script")
    with pytest.raises(ValueError, match="no speaker column"):
        report.is_clean("speaker")
    assert "not checked" in report.to_text()
    with pytest.raises(SplitError, match="no 'fold' column"):
        leakage_report(out, part_column="fold")


# ------------------------------------------------------------------- cross-validation


def test_kfold_groups_speakers_and_tests_every_row_once(corpus):
    folds = cross_validation_folds(corpus, "kfold", k=5, group="speaker", seed=0)
    assert [f.name for f in folds] == [f"fold{i}" for i in range(1, 6)]
    test_count = pd.Series(0, index=corpus.index)
    for fold in folds:
        assert fold.part.index.equals(corpus.index)
        assert set(fold.part) == {"train", "val", "test"}
        parts_per_speaker = corpus.assign(part=fold.part).groupby("speaker")["part"].nunique()
        assert (parts_per_speaker == 1).all(), fold.name
        test_count += fold.part == "test"
    assert (test_count == 1).all()
    again = cross_validation_folds(corpus, "kfold", k=5, seed=0)
    assert all(a.part.equals(b.part) for a, b in zip(folds, again, strict=True))


def test_kfold_by_script_keeps_sentences_apart(corpus):
    for fold in cross_validation_folds(corpus, "kfold", k=3, group="script", seed=1):
        report = leakage_report(corpus.assign(part=fold.part))
        assert report.shared_texts == 0, fold.name


def test_leave_one_speaker_out(corpus):
    small = corpus[corpus["speaker"].isin([f"spk{i:03d}" for i in range(6)])]
    folds = cross_validation_folds(small, "logo", group="speaker", seed=0)
    assert sorted(f.name for f in folds) == sorted(small["speaker"].unique())
    for fold in folds:
        tested = set(small.loc[fold.part == "test", "speaker"])
        assert tested == {fold.name}
        assert (fold.part == "val").any()
        assert leakage_report(small.assign(part=fold.part)).shared_speakers == 0


def test_cv_errors_are_clear(corpus):
    few = corpus[corpus["speaker"].isin(["spk000", "spk001", "spk002"])]
    with pytest.raises(SplitError, match="k=5 folds but only 3 distinct speaker groups"):
        cross_validation_folds(few, "kfold", k=5)
    with pytest.raises(SplitError, match="cannot carve a val part"):
        cross_validation_folds(few[few["speaker"] != "spk002"], "logo")
    with pytest.raises(SplitError, match="no speaker column values"):
        cross_validation_folds(corpus.assign(speaker=""), "kfold")
    with pytest.raises(SplitError, match="scheme must be"):
        cross_validation_folds(corpus, "bootstrap")


# -------------------------------------------------------------------------- real EmoDB


def test_emodb_speaker_split_and_leave_one_speaker_out(emodb_table):
    assert emodb_table["speaker"].nunique() == 6
    out = assign_split(emodb_table, "speaker", seed=0)
    report = leakage_report(out)
    assert report.shared_speakers == 0
    assert report.speakers_per_part["test"] >= 1 and report.speakers_per_part["val"] >= 1
    # every sentence is read by every speaker, so a speaker split still shares all texts
    assert report.shared_texts == 10
    folds = cross_validation_folds(emodb_table, "logo", group="speaker")
    assert len(folds) == 6
    covered = pd.concat([f.part == "test" for f in folds], axis=1).sum(axis=1)
    assert (covered == 1).all()


def test_emodb_speaker_plus_script_is_clean(emodb_table):
    out = assign_split(emodb_table, "speaker+script", val_size=0, seed=0)
    assert leakage_report(out).is_clean("speaker+script")
    assert 0 < out.attrs["dropped_rows"] < len(emodb_table)
    assert set(out["part"]) == {"train", "test"}


# --------------------------------------------------------------------------------- CLI


def test_cli_split_writes_parts_and_prints_the_report(tmp_path, corpus, capsys):
    src = write_table(corpus, tmp_path / "corpus.parquet", ["sad", "happy", "angry", "anxious"])
    out = tmp_path / "split.parquet"
    assert (
        main(["split", str(src), "--strategy", "speaker+script", "--seed", "3", "-o", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "dropped" in printed and "verdict: speakers: clean; texts: clean" in printed
    table, labels = read_table(out)
    assert labels == ["sad", "happy", "angry", "anxious"]
    assert set(table["part"]) == {"train", "val", "test"}

    assert main(["leakage", str(out)]) == 0
    assert "verdict: speakers: clean; texts: clean" in capsys.readouterr().out

    leaky = tmp_path / "leaky.csv"
    write_table(assign_split(corpus, "stratified").rename(columns={"part": "p"}), leaky)
    assert main(["leakage", str(leaky), "--part-column", "p"]) == 0
    assert "in >1 part" in capsys.readouterr().out


def test_cli_split_errors_are_one_line(tmp_path, corpus, capsys):
    src = write_table(corpus.assign(speaker=""), tmp_path / "c.parquet")
    assert (
        main(["split", str(src), "--strategy", "speaker", "-o", str(tmp_path / "o.parquet")]) == 2
    )
    err = capsys.readouterr().err
    assert "c.parquet" in err and "use stratified or script" in err
    assert not (tmp_path / "o.parquet").exists()
    assert main(["leakage", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert main(["leakage", str(src)]) == 2
    assert "no 'part' column" in capsys.readouterr().err


def test_cli_strategy_choices_match_the_module():
    from emofuse.cli.split import STRATEGIES

    assert STRATEGIES == SPLIT_STRATEGIES


def test_leakage_report_checks_group_columns_and_names_a_leak():
    from emofuse.splits import promised_apart

    table = pd.DataFrame(
        {
            "speaker": ["a", "a", "b", "c"],
            "text": ["one", "two", "three", "one!"],
            "session": ["s1", "s2", "s2", "s3"],
            "part": ["train", "train", "test", "test"],
        }
    )
    report = leakage_report(table, groups=("session",))
    assert report.shared_groups == {"session": 1}
    assert report.first_leak("session") == ("s2", "train", "test")
    assert report.first_leak("text") == ("one", "train", "test")  # normalised: "one!" = "one"
    assert report.first_leak("speaker") is None
    with pytest.raises(ValueError, match="did not check 'gender'"):
        report.first_leak("gender")
    assert promised_apart("speaker+script") == ("speaker", "text", "script")
    assert promised_apart("logo", group="session") == ("session",)
    assert promised_apart("stratified") == ()
