"""The grid runner: cells, features once per encoder, resume, CV folds without leakage,
traceable training ids, and the command end to end (toy encoders keep it fast)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-chars
from support.toy_bundle import corpus_row

from emofuse.corpus.table import write_table
from emofuse.experiments import cells as grid_cells
from emofuse.experiments.config import GridRunError, grid_config_from_dict
from emofuse.experiments.plan import Cell, plan_cells
from emofuse.experiments.results import RESULT_COLUMNS, ResultsFile
from emofuse.experiments.runner import run_grid
from emofuse.experiments.split_views import SplitView, check_disjoint

TESTS = Path(__file__).resolve().parent
LABELS = ("happy", "sad", "angry")
SENTENCES = {
    "happy": ("정말 좋아요", "오늘 기뻐요", "최고예요 하하", "신나는 날이에요"),
    "sad": ("너무 슬퍼요", "눈물이 나요", "마음이 아파요 흑", "우울한 하루"),
    "angry": ("화가 나요!", "왜 그랬어!", "정말 짜증나!", "그만해!!"),
}


def make_toy_corpus(directory: Path, speakers: int = 4) -> Path:
    """3 labels x 4 scripts x ``speakers`` short WAVs whose pitch follows the label."""
    import soundfile as sf

    rows = []
    rng = np.random.default_rng(0)
    (directory / "wav").mkdir(parents=True, exist_ok=True)
    for li, label in enumerate(LABELS):
        for si, text in enumerate(SENTENCES[label]):
            for speaker in range(speakers):
                seconds = 0.15 + 0.05 * si + 0.02 * speaker
                t = np.arange(int(16_000 * seconds)) / 16_000
                freq = 140 + 90 * li + 10 * speaker
                wave = 0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
                uid = f"s{speaker}_{label}_{si}"
                path = directory / "wav" / f"{uid}.wav"
                sf.write(path, wave.astype(np.float32), 16_000)
                rows.append(corpus_row(uid, path, text, label, speaker, f"{li}{si}", seconds))
    return write_table(pd.DataFrame(rows), directory / "corpus.parquet", list(LABELS))


def toy_config(corpus: Path, out: Path, strategies=("speaker", "logo"), **grid) -> object:
    raw = {
        "name": "toy",
        "corpus": {"source": str(corpus)},
        "split": {"strategies": list(strategies), "val_size": 0.2, "test_size": 0.25},
        "encoders": {"speech": ["toy-stats"], "text": ["toy-chars"]},
        "grid": {
            "modalities": ["speech", "text", "both"],
            "per_label": [2, "all"],
            "orders": ["random", "longest"],
            "seeds": [0, 1],
            **grid,
        },
        "train": {"epochs": 3, "hidden": 16},
        "output": {"dir": str(out)},
    }
    return grid_config_from_dict(raw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy-corpus"))


@pytest.fixture()
def encode_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    return log


def _count(log: Path, kind: str) -> int:
    return (
        sum(line.startswith(kind) for line in log.read_text().splitlines()) if log.exists() else 0
    )


def test_plan_and_cell_ids(corpus, tmp_path):
    config = toy_config(corpus, tmp_path / "out")
    cells = plan_cells(config, {"speaker": [""], "logo": ["spk0", "spk1"]})
    # (1 + 2 folds) x (speech + text + both) x 2 sizes x 2 orders x 2 seeds
    assert len(cells) == 3 * 3 * 2 * 2 * 2
    ids = [c.cell_id(config) for c in cells]
    assert len(set(ids)) == len(ids)
    assert {(c.speech_encoder, c.text_encoder) for c in cells if c.modality == "text"} == {
        ("", "toy-chars")
    }
    # the id follows the settings that change a figure, not where or how fast it runs
    import dataclasses

    faster = dataclasses.replace(config, output=dataclasses.replace(config.output, jobs=4))
    assert cells[0].cell_id(faster) == ids[0]
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=4))
    assert cells[0].cell_id(other) != ids[0]


def test_results_file_cuts_a_half_written_row(tmp_path):
    results = ResultsFile(tmp_path / "results.csv")
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(cell_id="a", seed=0, n_train=1, n_val=1, n_test=1, best_epoch=1)
    row.update(uar=0.5, accuracy=0.5, macro_f1=0.5, seconds=0.1)
    results.append(row)
    with results.path.open("a") as handle:
        handle.write("b,speaker,,speech,toy")  # a kill mid-write
    assert results.finished() == {"a"}
    results.append({**row, "cell_id": "c"})
    assert results.finished() == {"a", "c"}
    assert len(results.path.read_text().splitlines()) == 3
    # a kill while the header itself was written: nothing finished, the header is rewritten
    cut = ResultsFile(tmp_path / "cut.csv")
    cut.path.write_text(",".join(RESULT_COLUMNS)[:20])
    assert cut.finished() == set()
    cut.append(row)
    assert cut.finished() == {"a"}


def test_grid_end_to_end_and_resume(corpus, tmp_path, encode_log, monkeypatch):
    out = tmp_path / "out"
    config = toy_config(corpus, out)
    run = run_grid(config, progress=False)
    n_clips = len(pd.read_parquet(corpus))
    assert run.failed == []
    assert run.ran == run.cells == len(run.results)
    folds = run.results.loc[run.results["split_strategy"] == "logo", "fold"]
    assert set(folds) == {"spk0", "spk1", "spk2", "spk3"}
    assert run.cells == (1 + 4) * 3 * 2 * 2 * 2
    # speech vectors were computed once per clip, never per cell
    assert _count(encode_log, "speech") == n_clips
    assert 0 < _count(encode_log, "text") <= 5 * 12  # distinct sentences per split/fold

    frame = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(frame.columns) == list(RESULT_COLUMNS)
    assert frame["uar"].between(0, 1).all() and (frame["n_test"] > 0).all()
    two = frame[frame["per_label"] == "2"]
    assert (two["n_train"] == 2 * len(LABELS)).all()

    # every cell's training ids are on disk and lie in its split's train part
    table = pd.read_parquet(corpus)
    for _, row in frame.sample(8, random_state=0).iterrows():
        ids = (out / row["train_ids_file"]).read_text().split()
        assert len(ids) == row["n_train"]
        key = f"{row['split_strategy']}__{row['fold']}" if row["fold"] else row["split_strategy"]
        split = pd.read_csv(out / "splits" / f"{key}.csv")
        train = set(split.loc[split["part"] == "train", "id"])
        assert set(ids) <= train
        assert set(table.loc[table["id"].isin(ids), "label"]) == set(LABELS)

    for name in ("table3", "table4", "table6", "splits", "summary"):
        assert (out / "tables" / f"{name}.md").exists(), name
    assert (out / "plots" / "curves-logo.png").exists()
    report = (out / "report.md").read_text()
    assert "tables/table6.md" in report and "plots/curves-logo.png" in report

    # resume: drop some rows and leave a half-written one; only those cells run again
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    keep = 1 + len(frame) - 7
    (out / "results.csv").write_text("".join(lines[:keep]) + lines[keep][:25])
    calls = []
    real = grid_cells.train_cell
    monkeypatch.setattr(
        grid_cells, "train_cell", lambda task, cache: calls.append(task) or real(task, cache)
    )
    before = _count(encode_log, "speech")
    again = run_grid(config, progress=False)
    assert len(calls) == 7 and again.ran == 7 and again.skipped == run.cells - 7
    assert _count(encode_log, "speech") == before  # the store already had every vector
    after = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(after) == len(frame)
    merged = frame.merge(after, on="cell_id", suffixes=("", "_again"))
    assert len(merged) == len(frame)
    # finished rows were kept as they were; rerun cells give the same figures (seeded)
    assert np.allclose(merged["accuracy"], merged["accuracy_again"])

    calls.clear()
    done = run_grid(config, progress=False)
    assert calls == [] and done.ran == 0 and done.skipped == run.cells


def test_cv_folds_used_by_the_runner_never_share_a_speaker(corpus, tmp_path):
    config = toy_config(
        corpus, tmp_path / "out", modalities=["speech"], per_label=["all"], orders=["random"],
        seeds=[0],
    )  # fmt: skip
    import dataclasses

    config = dataclasses.replace(
        config,
        split=dataclasses.replace(config.split, strategies=("kfold", "logo"), k=2),
    )
    run = run_grid(config, progress=False, write_reports=False)
    table = pd.read_parquet(corpus).set_index("id")
    files = sorted((tmp_path / "out" / "splits").glob("*.csv"))
    assert len(files) == 2 + 4
    for path in files:
        split = pd.read_csv(path)
        speakers = {
            part: set(table.loc[split.loc[split["part"] == part, "id"], "speaker"])
            for part in ("train", "val", "test")
        }
        assert speakers["test"], path.name
        assert not speakers["train"] & speakers["test"], path.name
        assert not speakers["val"] & (speakers["train"] | speakers["test"]), path.name
    assert len(run.results) == 6


def test_a_leaking_fold_is_refused(corpus):
    table = pd.read_parquet(corpus)
    config = toy_config(corpus, Path("unused"))
    part = np.where(np.arange(len(table)) % 3 == 0, "train", "test").astype(object)
    with pytest.raises(GridRunError, match="speaker 'spk0' is in both"):
        check_disjoint(table, SplitView("logo", "spk0", part), config)


def _held_out(table: pd.DataFrame, by: str) -> np.ndarray:
    """test = one speaker (every sentence on both sides) or a tenth of the scripts (every
    speaker on both sides); train = the rest."""
    test = table["speaker"] == "spk3" if by == "speaker" else table["script"].str[1] == "0"
    return np.where(test, "test", "train").astype(object)


@pytest.mark.parametrize(
    "strategy, held_out_by, leak",
    [
        ("script", "speaker", "text"),
        ("speaker+script", "speaker", "text"),
        ("speaker+script", "script", "speaker"),
        ("speaker", "script", "speaker"),
        ("logo", "speaker", "script"),  # CV grouped by the script column
    ],
)
def test_every_strategy_is_checked_for_what_it_keeps_apart(corpus, strategy, held_out_by, leak):
    import dataclasses
    import re

    table = pd.read_parquet(corpus)
    config = toy_config(corpus, Path("unused"))
    config = dataclasses.replace(config, split=dataclasses.replace(config.split, group="script"))
    view = SplitView(strategy, "f" if strategy == "logo" else "", _held_out(table, held_out_by))
    expected = rf"split {re.escape(view.key)}: {leak} '.+' is in both train and test"
    with pytest.raises(GridRunError, match=expected):
        check_disjoint(table, view, config)


@pytest.mark.parametrize("strategy, held_out_by", [("script", "script"), ("speaker", "speaker"),
                                                   ("corpus", "speaker"), ("logo", "script")])  # fmt: skip
def test_a_split_clean_of_what_its_strategy_promises_passes(corpus, strategy, held_out_by):
    import dataclasses

    table = pd.read_parquet(corpus)
    config = toy_config(corpus, Path("unused"))
    config = dataclasses.replace(config, split=dataclasses.replace(config.split, group="script"))
    check_disjoint(table, SplitView(strategy, "", _held_out(table, held_out_by)), config)


def test_a_config_without_its_corpus_stops_the_grid_with_what_to_pass(tmp_path):
    config = grid_config_from_dict(
        {"corpus": {"source": ""}, "output": {"dir": str(tmp_path / "o")}}
    )
    with pytest.raises(GridRunError, match=r"corpus\.source: not set; pass the corpus with"):
        run_grid(config, progress=False)


def test_bad_corpus_and_labels_name_the_key(tmp_path, corpus):
    config = toy_config(tmp_path / "absent.parquet", tmp_path / "out")
    with pytest.raises(GridRunError, match="corpus.source"):
        run_grid(config, progress=False)
    config = grid_config_from_dict(
        {"corpus": {"source": str(corpus), "labels": ["happy", "bored"]},
         "output": {"dir": str(tmp_path / "o2")}}
    )  # fmt: skip
    with pytest.raises(GridRunError, match=r"corpus.labels: \['bored'\]"):
        run_grid(config, progress=False)
    config = grid_config_from_dict(
        {"corpus": {"source": str(corpus)}, "grid": {"modalities": ["speech"]},
         "encoders": {"speech": ["no-such-encoder"]}, "output": {"dir": str(tmp_path / "o3")}}
    )  # fmt: skip
    with pytest.raises(GridRunError, match="encoders.speech: 'no-such-encoder'"):
        run_grid(config, progress=False)


@pytest.mark.slow
def test_parallel_cells_match_serial(corpus, tmp_path):
    kwargs = {"modalities": ["both"], "per_label": [3], "orders": ["random"], "seeds": [0, 1, 2]}
    serial = run_grid(toy_config(corpus, tmp_path / "a", **kwargs), progress=False)
    parallel = run_grid(toy_config(corpus, tmp_path / "b", **kwargs), jobs=2, progress=False)
    a = serial.results.set_index("cell_id").sort_index()
    b = parallel.results.set_index("cell_id").sort_index()
    assert list(a.index) == list(b.index)
    assert np.allclose(a["accuracy"], b["accuracy"]) and (a["n_train"] == b["n_train"]).all()
    assert not (tmp_path / "b" / ".vectors").exists()


def test_demo_source_with_toy_encoders(tmp_path):
    config = grid_config_from_dict(
        {
            "corpus": {"source": "demo", "demo_speakers": 3, "demo_scripts_per_emotion": 2},
            "split": {"strategies": ["corpus"]},
            "encoders": {"speech": ["toy-stats"], "text": ["toy-chars"]},
            "grid": {"modalities": ["speech", "both"], "per_label": [1, "all"], "seeds": [0]},
            "train": {"epochs": 2},
            "output": {"dir": str(tmp_path / "demo")},
        }
    )
    run = run_grid(config, progress=False)
    assert (tmp_path / "demo" / "demo-corpus" / "Training").is_dir()
    assert len(run.results) == 4 and run.failed == []
    assert set(run.results["n_test"]) == {7 * 2}  # the Validation speaker's clips


def _cli(config: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emofuse", "experiment", str(config), "--no-progress", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if r.get("train_ids_file")]


@pytest.mark.slow
def test_killed_grid_resumes_from_the_command_line(corpus, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "grid.toml"
    config.write_text(
        f"""
name = "kill"
[corpus]
source = "{corpus}"
[split]
strategies = ["logo"]
[encoders]
speech = ["toy-stats"]
text = ["toy-chars"]
[grid]
modalities = ["speech", "both"]
per_label = [2, 3, "all"]
seeds = [0, 1, 2]
[train]
epochs = 150
hidden = 64
[output]
dir = "{out}"
"""
    )
    env = {**os.environ, "EMOFUSE_PLUGINS": "support.toy_encoders", "PYTHONPATH": str(TESTS)}
    total = 4 * 2 * 3 * 3
    first = _cli(config, env)
    deadline = time.time() + 120
    while len(_rows(out / "results.csv")) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    finished = {r["cell_id"]: r for r in _rows(out / "results.csv")}
    assert 3 <= len(finished) < total, "the grid should have been killed part-way"

    second = _cli(config, env)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"{total} cells, {total - len(finished)} run now, {len(finished)} already done" in stdout
    rows = {r["cell_id"]: r for r in _rows(out / "results.csv")}
    assert len(rows) == total
    for cell_id, row in finished.items():  # finished cells were not recomputed
        assert rows[cell_id] == row

    third = _cli(config, env)
    stdout, _ = third.communicate(timeout=120)
    assert f"0 run now, {total} already done" in stdout


def test_cell_order_by(corpus, tmp_path):
    config = toy_config(corpus, tmp_path)
    text = Cell("speaker", "", "text", "", "toy-chars", 2, "longest", 0)
    both = Cell("speaker", "", "both", "toy-stats", "toy-chars", 2, "longest", 0)
    assert text.order_by(config) == "text_length"
    assert both.order_by(config) == "duration_s"


def test_resume_refuses_a_corpus_changed_in_place(tmp_path):
    from emofuse.experiments.corpus import guard_corpus_identity

    table = pd.DataFrame(
        {"id": ["a", "b"], "label": ["x", "y"], "text": ["t", "u"], "audio": ["/a", "/b"],
         "speaker": ["s", "s"], "duration_s": [1.0, 2.0]}
    )  # fmt: skip
    guard_corpus_identity(table, tmp_path)
    (tmp_path / "results.csv").write_text("cell_id\n")
    guard_corpus_identity(table.iloc[::-1], tmp_path)  # same rows, other order: fine
    changed = table.assign(label=["x", "x"])
    with pytest.raises(GridRunError, match="another version of the corpus"):
        guard_corpus_identity(changed, tmp_path)


def test_cells_score_through_the_prediction_engine(corpus, tmp_path, monkeypatch):
    """A grid figure comes from the same probabilities evaluate, predict and serve give."""
    import emofuse.head.score

    real, calls = emofuse.head.score.probabilities_from_features, []

    def counted(model, features, **kwargs):
        calls.append(sorted(features))
        return real(model, features, **kwargs)

    monkeypatch.setattr(emofuse.head.score, "probabilities_from_features", counted)
    config = toy_config(corpus, tmp_path / "out", per_label=[2], orders=["random"], seeds=[0])
    run = run_grid(config, progress=False, write_reports=False, max_cells=3)
    assert run.failed == [] and run.ran == 3
    assert calls == [["speech"], ["text"], ["speech", "text"]]


def test_results_written_before_the_speaker_norm_columns_still_read_and_upgrade(tmp_path):
    """A results.csv of an earlier version (no speaker_norm / speaker_adapted) is read with
    the value its rows meant, and rewritten whole with today's header before an append."""
    old_columns = [c for c in RESULT_COLUMNS if c not in ("speaker_norm", "speaker_adapted")]
    path = tmp_path / "results.csv"
    row = dict.fromkeys(old_columns, "")
    row.update(cell_id="a", seed=0, n_train=1, n_val=1, n_test=1, best_epoch=1)
    row.update(uar=0.5, accuracy=0.5, macro_f1=0.5, seconds=0.1, train_ids_file="ids.txt")
    rows = [row, {**row, "cell_id": "z"}]
    pd.DataFrame(rows, columns=old_columns).to_csv(path, index=False)
    # the grid has always written each cell's settings to cells/<id>/cell.json
    (tmp_path / "cells" / "a").mkdir(parents=True)
    (tmp_path / "cells" / "a" / "cell.json").write_text('{"speaker_norm": "auto"}')
    results = ResultsFile(path)
    frame = results.read().set_index("cell_id")
    assert frame.loc["a", "speaker_norm"] == "auto" and frame.loc["a", "speaker_adapted"] == ""
    assert frame.loc["z", "speaker_norm"] == ""  # no cell.json: unknown, not "off"
    results.append({**row, "cell_id": "b", "speaker_norm": "off", "speaker_adapted": "no"})
    assert _rows(path)[0].keys() >= {"speaker_norm", "speaker_adapted"}
    by_id = {r["cell_id"]: r for r in _rows(path)}
    assert by_id["a"]["speaker_norm"] == "auto" and by_id["b"]["speaker_norm"] == "off"
    assert by_id["b"]["speaker_adapted"] == "no" and by_id["a"]["speaker_adapted"] == ""


def test_a_grid_sweeping_speaker_norm_records_it_and_its_tables_tell_them_apart(
    corpus, tmp_path, monkeypatch
):
    """grid.speaker_norm is a column of results.csv (the setting and whether the head
    adapts), the test part is scored with its speakers' statistics, and the summary table
    gets a "Speaker norm" column."""
    import emofuse.head.score
    from emofuse.experiments.tables import summary_table

    real, seen = emofuse.head.score.probabilities_from_features, []

    def spy(model, features, **kwargs):
        seen.append((model.speaker_norm is not None, kwargs.get("speakers")))
        return real(model, features, **kwargs)

    monkeypatch.setattr(emofuse.head.score, "probabilities_from_features", spy)
    config = toy_config(
        corpus, tmp_path / "out", strategies=["speaker"], modalities=["speech"],
        per_label=["all"], orders=["random"], seeds=[0], speaker_norm=["off", "on"],
    )  # fmt: skip
    run = run_grid(config, progress=False, write_reports=False)
    assert run.failed == [] and run.ran > 0
    rows = _rows(tmp_path / "out" / "results.csv")
    assert {r["speaker_norm"] for r in rows} == {"off", "on"}
    assert {r["speaker_adapted"] for r in rows if r["speaker_norm"] == "off"} == {"no"}
    assert {r["speaker_adapted"] for r in rows if r["speaker_norm"] == "on"} == {"yes"}
    adapted = [speakers for on, speakers in seen if on]
    assert adapted and all(speakers for speakers in adapted)  # scored with test speakers
    table = summary_table(ResultsFile(tmp_path / "out" / "results.csv").read())
    assert "Speaker norm" in table.splitlines()[0]
