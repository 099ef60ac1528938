"""`emofuse suggest` end to end on a tiny pool with a toy bundle: the output's columns and
scores (the same probabilities `predict` gives), a seed that fixes it, a store that makes
the second run encode nothing, what is left out (answers, labels in the pool), and the
hostile cases: no audio, blank and repeated ids, -n beyond the pool, answers of another
pool, an unknown strategy, an output that is an input, a disk that fills up."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from support.serve_support import TOY_PITCH_HZ, TOY_SENTENCES, toy_bundle, toy_clip
from support.toy_encoders import encoded_items

from emofuse.active.suggest import ADDED_COLUMNS
from emofuse.cli import main

PLUGIN = ["--plugin", "support.toy_encoders", "--no-progress"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return toy_bundle(tmp_path_factory, "speech")


def _pool_rows(directory: Path, per_label: int = 5, speakers: int = 3) -> list[dict]:
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for li, label in enumerate(TOY_PITCH_HZ):
        for i in range(per_label):
            name = f"{label}{i}.wav"
            sf.write(directory / name, toy_clip(label, 0.4 + 0.05 * i, seed=10 * li + i), 16_000)
            rows.append({"id": f"{label}{i}", "audio": name, "text": TOY_SENTENCES[label],
                         "speaker": f"spk{i % speakers}", "batch": f"b{i % 2}"})  # fmt: skip
    return rows


@pytest.fixture
def pool(tmp_path) -> Path:
    path = tmp_path / "pool" / "pool.csv"
    pd.DataFrame(_pool_rows(path.parent)).to_csv(path, index=False)
    return path


def _suggest(bundle_dir, pool, out, *extra, store=None) -> int:
    store = store or out.parent / "features"
    return main(["suggest", str(bundle_dir), str(pool), "-o", str(out), "--store", str(store),
                 *extra, *PLUGIN])  # fmt: skip


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype={"id": str})


def test_suggests_ranked_clips_with_the_models_view(bundle_dir, pool, tmp_path, capsys):
    from emofuse.bundle import Bundle

    out = tmp_path / "next.csv"
    assert _suggest(bundle_dir, pool, out, "-n", "8") == 0
    frame = _read(out)
    assert list(frame.columns) == ["id", "audio", "text", "speaker", "batch", *ADDED_COLUMNS]
    assert frame["rank"].tolist() == list(range(1, 9))
    assert frame["id"].is_unique and set(frame["id"]) <= set(pd.read_csv(pool)["id"])
    assert (frame["audio"] == "pool/" + frame["id"] + ".wav").all()  # relative to next.csv
    assert (frame["p_predicted"] >= frame["p_second"]).all()
    np.testing.assert_allclose(frame["margin"], frame["p_predicted"] - frame["p_second"], atol=2e-4)
    assert frame["reason"].str.startswith("uncertain: ").all()
    # the hybrid shares its picks over the predicted emotions: 8 picks, 4 emotions, 2 each
    assert frame["predicted"].value_counts().tolist() == [2, 2, 2, 2]
    # the scores are those of `predict` (one scoring path)
    bundle = Bundle.load(bundle_dir)
    predictions = bundle.predict([str(out.parent / a) for a in frame["audio"]])  # rebased
    for p, row in zip(predictions, frame.itertuples(), strict=True):
        assert p.label == row.predicted
        assert p.probabilities[row.predicted] == pytest.approx(row.p_predicted, abs=1e-4)
        assert p.probabilities[row.second] == pytest.approx(row.p_second, abs=1e-4)
    assert "8 clips suggested by hybrid from 20 not yet labelled" in capsys.readouterr().err


def test_a_seed_fixes_the_order_and_the_store_is_reused(bundle_dir, pool, tmp_path, monkeypatch):
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    first, again, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert _suggest(bundle_dir, pool, first, "-n", "6", "--strategy", "random", "--seed", "3") == 0
    encoded = encoded_items(log)
    assert encoded == 20  # every clip once
    assert _suggest(bundle_dir, pool, again, "-n", "6", "--strategy", "random", "--seed", "3") == 0
    assert encoded_items(log) == encoded  # the second run reads the store
    assert first.read_bytes() == again.read_bytes()
    assert _suggest(bundle_dir, pool, other, "-n", "6", "--strategy", "random", "--seed", "4") == 0
    assert _read(first)["id"].tolist() != _read(other)["id"].tolist()


@pytest.mark.parametrize("strategy", ["uncertainty", "diverse"])
def test_other_strategies_say_why(bundle_dir, pool, tmp_path, strategy):
    out = tmp_path / "next.parquet"
    assert _suggest(bundle_dir, pool, out, "-n", "5", "--strategy", strategy) == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 5
    if strategy == "uncertainty":
        assert frame["margin"].is_monotonic_increasing
        assert frame["reason"].str.startswith("uncertain: ").all()
    else:
        assert frame["reason"].str.startswith("far from the clips labelled and picked").all()


def test_answered_and_labelled_clips_are_left_out(bundle_dir, pool, tmp_path, capsys):
    from emofuse.corpus.answers import RETRACT, append_answer

    answers = tmp_path / "answers.csv"
    append_answer(answers, id="angry0", label="angry", annotator="kim")
    append_answer(answers, id="sad1", label="sad", annotator="kim")
    append_answer(answers, id="happy2", label="happy", annotator="kim")
    append_answer(answers, id="happy2", annotator="kim", action=RETRACT)  # undone: still open
    append_answer(answers, id="not-in-this-pool", label="sad", annotator="lee")
    frame = pd.read_csv(pool)
    frame["label"] = ""
    frame.loc[frame["id"] == "neutral3", "label"] = "neutral"  # labelled in the pool itself
    frame.to_csv(pool, index=False)
    out = tmp_path / "next.csv"
    # -n beyond the pool: every clip not yet labelled, once
    assert _suggest(bundle_dir, pool, out, "-n", "100", "--exclude", str(answers)) == 0
    ids = _read(out)["id"].tolist()
    assert sorted(ids) == sorted(set(frame["id"]) - {"angry0", "sad1", "neutral3"})
    err = capsys.readouterr().err
    assert "1 answered ids of" in err and "'not-in-this-pool'" in err
    assert "only 17 clips could be suggested (asked for 100)" in err
    assert "17 clips suggested by hybrid from 17 not yet labelled (3 labelled or answered)" in err


def test_answers_not_written_yet_leave_nothing_out(bundle_dir, pool, tmp_path, capsys):
    out = tmp_path / "next.csv"
    answers = tmp_path / "answers.csv"  # the loop's first round
    assert _suggest(bundle_dir, pool, out, "-n", "3", "--exclude", str(answers)) == 0
    assert "answers.csv does not exist yet" in capsys.readouterr().err
    assert len(_read(out)) == 3 and not answers.exists()


def test_a_text_only_pool(bundle_dir, tmp_path_factory, tmp_path, capsys):
    path = tmp_path / "sentences.csv"
    texts = [TOY_SENTENCES[label] + "!" * i for label in TOY_SENTENCES for i in range(3)]
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    out = tmp_path / "next.csv"
    assert _suggest(bundle_dir, path, out, "-n", "3") == 2
    err = capsys.readouterr().err
    assert "has no audio (a text-only pool)" in err and "suggest with a text model" in err
    assert not out.exists()
    text_bundle = toy_bundle(tmp_path_factory, "text")
    assert _suggest(text_bundle, path, out, "-n", "4") == 0
    frame = _read(out)
    assert list(frame.columns) == ["id", "text", *ADDED_COLUMNS]
    assert frame["id"].str.startswith("sentences-").all() and frame["id"].is_unique


def test_blank_and_repeated_ids(bundle_dir, tmp_path, capsys):
    path = tmp_path / "pool" / "pool.csv"
    rows = _pool_rows(path.parent, per_label=2)
    rows[0]["id"] = ""  # made from the file name, as `prepare` does
    rows[2]["id"] = rows[1]["id"]  # the second copy is left out
    pd.DataFrame(rows).to_csv(path, index=False)
    out = tmp_path / "next.csv"
    assert _suggest(bundle_dir, path, out, "-n", "50", "--strategy", "uncertainty") == 0
    frame = _read(out)
    assert len(frame) == 7 and frame["id"].is_unique and (frame["id"] != "").all()
    assert "angry0" in set(frame["id"])  # the blank id, made from angry0.wav
    assert "duplicate-id (1)" in capsys.readouterr().err


def test_refused_before_any_work(bundle_dir, pool, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _suggest(bundle_dir, pool, tmp_path / "next.csv", "-n", "3", "--strategy", "smart")
    assert stop.value.code == 2
    assert "invalid choice: 'smart'" in capsys.readouterr().err
    assert _suggest(bundle_dir, pool, pool, "-n", "3") == 2
    assert "this output is also an input" in capsys.readouterr().err
    assert _suggest(bundle_dir, pool, tmp_path / "next.txt", "-n", "3") == 2
    assert "'.txt' is not one it is written in" in capsys.readouterr().err
    assert _suggest(bundle_dir, pool, tmp_path / "next.csv", "-n", "3", "--exclude",
                    str(tmp_path)) == 2  # fmt: skip
    assert "not a file (an answers.csv)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _suggest(bundle_dir, pool, tmp_path / "next.csv", "-n", "0")
    assert not (tmp_path / "next.csv").exists()


def test_a_full_disk_leaves_no_output(bundle_dir, pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "next.csv"
    out.write_text("id\nearlier\n")

    def full(self, frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("emofuse.outputs.TableWriter.write", full)
    assert _suggest(bundle_dir, pool, out, "-n", "3") == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "id\nearlier\n"  # the earlier output stays as it was
    assert not Path(str(out) + ".partial").exists()


def test_speaker_statistics_apply_as_in_predict(bundle_dir, pool, tmp_path):
    from support.speaker_bundles import adapting, fit_norm

    from emofuse.active.suggest import suggest
    from emofuse.bundle import Bundle
    from emofuse.corpus.pool import read_pool

    pool_read = read_pool(pool)
    train = pool_read.table.assign(part="train")
    bundle = Bundle.load(bundle_dir)
    adapting(bundle, fit_norm(bundle, train, k=1.0))
    found = suggest(bundle, pool_read, 20, store=tmp_path / "features", strategy="uncertainty")
    assert any("adapted to 3 speakers" in note for note in found.notes)
    frame = found.table
    expected = bundle.predict(
        [str(pool.parent / a) for a in frame["audio"]], speaker=list(frame["speaker"])
    )
    for p, row in zip(expected, frame.itertuples(), strict=True):
        assert p.speaker_clips is not None and p.speaker_clips > 1
        assert p.probabilities[row.predicted] == pytest.approx(row.p_predicted, abs=1e-4)
    unadapted = Bundle.load(bundle_dir).predict([str(pool.parent / a) for a in frame["audio"]])
    assert any(
        abs(a.probabilities[row.predicted] - row.p_predicted) > 1e-3
        for a, row in zip(unadapted, frame.itertuples(), strict=True)
    )


def test_the_output_is_a_pool_wherever_it_is_written(bundle_dir, pool, tmp_path):
    from emofuse.corpus.pool import read_pool

    out = tmp_path / "elsewhere" / "deeper" / "next.csv"
    out.parent.mkdir(parents=True)
    assert _suggest(bundle_dir, pool, out, "-n", "4") == 0
    frame = _read(out)
    for audio, ident in zip(frame["audio"], frame["id"], strict=True):
        assert not Path(audio).is_absolute()
        assert (out.parent / audio).resolve() == (pool.parent / f"{ident}.wav").resolve()
    again = read_pool(out)  # `emofuse label next.csv` reads the same clips, same ids
    assert again.table["id"].tolist() == frame["id"].tolist()
    assert [Path(a).name for a in again.table["audio"]] == [f"{i}.wav" for i in frame["id"]]


def test_nothing_left_to_label_is_an_empty_answer(bundle_dir, pool, tmp_path, capsys):
    from emofuse.corpus.answers import append_answer

    answers = tmp_path / "answers.csv"
    for ident in pd.read_csv(pool)["id"]:
        append_answer(answers, id=ident, label="sad", annotator="kim")
    out = tmp_path / "next.csv"
    assert _suggest(bundle_dir, pool, out, "-n", "5", "--exclude", str(answers)) == 0
    frame = _read(out)
    assert len(frame) == 0 and list(frame.columns)[-len(ADDED_COLUMNS) :] == list(ADDED_COLUMNS)
    assert (
        "0 clips suggested by hybrid from 0 not yet labelled (20 labelled"
        in capsys.readouterr().err
    )
