"""What training prints (issue 24): one line per phase, naming what is fitted, on which
rows and what for, in the order the phases run; the epochs as one bar per fit, on a
terminal only; a line per epoch only with ``verbose`` / ``emofuse train --verbose``."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import sys

import numpy as np
import pytest
import tqdm
from test_bundle import LABELS
from test_pipeline import tone_table
from test_recipe_train import with_speakers

from emofuse.cli import main
from emofuse.head.train import TrainConfig, fit_head
from emofuse.head.training_log import TrainingLog

FAST = TrainConfig(epochs=3, hidden=8, lr=1e-2, batch_size=16, min_steps=12)
EPOCH = re.compile(r"^epoch +\d+/\d+ ")


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.standard_normal((n, 5)) + 2.0 * y[:, None]).astype(np.float32), y


def _data():
    (x, y), (xv, yv) = _blobs(40, 1), _blobs(20, 2)
    return x, y, xv, yv


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _positions(lines: list[str], starts: list[str]) -> list[int]:
    """The index of the first line starting with each of ``starts`` (fails if absent)."""
    found = []
    for start in starts:
        hits = [i for i, line in enumerate(lines) if line.startswith(start)]
        assert hits, f"no line starting with {start!r} in:\n" + "\n".join(lines)
        found.append(hits[0])
    return found


def test_each_fit_gets_one_line_in_order_and_no_epoch_lines(capsys):
    x, y, xv, yv = _data()
    config = dataclasses.replace(FAST, calibrate=True)
    fit_head(x, y, xv, yv, n_classes=3, config=config)  # the Python default: progress on
    lines = _lines(capsys.readouterr().err)
    assert not [line for line in lines if EPOCH.match(line)]
    fit, calibration, refit = _positions(
        lines, ["fit on train:", "calibration:", "refit on train + val:"]
    )
    assert fit < calibration < refit and len(lines) == 3
    budget = max(FAST.epochs, math.ceil(FAST.min_steps / math.ceil(40 / FAST.batch_size)))
    assert lines[fit].startswith(f"fit on train: 40 rows, {budget} epochs")
    assert "val (20 rows) watched for the training history and calibration" in lines[fit]
    assert "fitted on val (20 rows)" in lines[calibration]
    assert lines[refit].startswith("refit on train + val: 60 rows")
    assert lines[refit].endswith("the model saved")


def test_verbose_adds_the_epoch_lines_under_the_fit_they_belong_to(capsys):
    x, y, xv, yv = _data()
    trained = fit_head(x, y, xv, yv, n_classes=3, config=FAST, verbose=True)
    lines = _lines(capsys.readouterr().err)
    fit, refit = _positions(lines, ["fit on train:", "refit on train + val:"])
    first = [line for line in lines[fit + 1 : refit] if EPOCH.match(line)]
    second = [line for line in lines[refit + 1 :] if EPOCH.match(line)]
    assert len(first) == len(trained.history) == refit - fit - 1
    assert "val UAR" in first[0] and "val UAR" not in second[0]  # the refit has no val
    refit_epochs = int(re.search(r"(\d+) epochs", lines[refit]).group(1))
    assert len(second) == refit_epochs and second[-1].startswith(f"epoch {refit_epochs:>3}/")


def test_quiet_without_progress_unless_verbose(capsys):
    x, y, xv, yv = _data()
    fit_head(x, y, xv, yv, n_classes=3, config=FAST, progress=False)
    assert capsys.readouterr().err == ""
    fit_head(x, y, n_classes=3, config=TrainConfig(recipe="paper", epochs=2), progress=False,
             verbose=True)  # fmt: skip
    lines = _lines(capsys.readouterr().err)
    assert lines[0].startswith("fit on train: 40 rows, 2 epochs")
    assert "the last epoch kept (no val part): the model saved" in lines[0]
    assert [EPOCH.match(line) is not None for line in lines[1:]] == [True, True]


class _Bars:
    """Every tqdm bar made, what it was made with and where it ended."""

    def __init__(self, monkeypatch):
        self.made: list[dict] = []
        made = self.made

        class Recorded(tqdm.std.tqdm):
            def __init__(self, *args, **kwargs):
                kwargs["file"] = io.StringIO()
                super().__init__(*args, **kwargs)
                self.record = {"desc": kwargs.get("desc"), "total": kwargs.get("total"),
                               "leave": kwargs.get("leave"), "disable": kwargs.get("disable")}  # fmt: skip
                made.append(self.record)

            def close(self):
                self.record.setdefault("n", self.n)
                super().close()

        monkeypatch.setattr(tqdm, "tqdm", Recorded)


def test_one_bar_per_fit_on_a_terminal_only(capsys, monkeypatch):
    bars = _Bars(monkeypatch)
    x, y, xv, yv = _data()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    trained = fit_head(x, y, xv, yv, n_classes=3, config=FAST)
    refit_epochs = int(re.search(r"refit on train \+ val: \d+ rows, (\d+) epochs",
                                 capsys.readouterr().err).group(1))  # fmt: skip
    assert [(b["desc"], b["total"], b["n"]) for b in bars.made] == [
        ("fit on train", len(trained.history), len(trained.history)),
        ("refit on train + val", refit_epochs, refit_epochs),
    ]
    assert all(b["leave"] is False and b["disable"] is False for b in bars.made)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    bars.made.clear()
    fit_head(x, y, xv, yv, n_classes=3, config=FAST)  # a log file: lines, never bars
    assert len(bars.made) == 2 and all(b["disable"] for b in bars.made)


def test_a_phase_without_a_bar_shows_a_passing_line_on_a_terminal_only(capsys, monkeypatch):
    """Model selection by CV trains no bar of its own: on a terminal a line says it runs
    and is wiped when its result line comes."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with TrainingLog().waiting("model selection by CV on 9 rows"):
        assert capsys.readouterr().err == "model selection by CV on 9 rows ..."
    assert capsys.readouterr().err == "\r\033[K"
    with TrainingLog(progress=False, verbose=True).waiting("model selection"):
        pass
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with TrainingLog().waiting("model selection"):
        pass
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ emofuse train


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from emofuse.corpus.table import write_table

    tmp = tmp_path_factory.mktemp("log")
    return write_table(with_speakers(tone_table(tmp)), tmp / "split.parquet", LABELS), tmp


def _train(split, *flags: str) -> list[str]:
    path, tmp = split
    argv = ["train", str(path), "--modality", "both", "--speech", "toy-speech", "--text",
            "toy-text", "--store", str(tmp / "store"), "-o", str(tmp / "bundle"), "--epochs",
            "2", "--hidden", "8", "--min-steps", "8", "--batch-size", "16",
            "--speaker-norm", "on", *flags]  # fmt: skip
    assert main(argv) == 0
    return argv


def test_emofuse_train_names_its_phases_and_prints_epochs_only_with_verbose(split, capsys):
    _train(split)
    lines = _lines(capsys.readouterr().err)
    assert not [line for line in lines if EPOCH.match(line)]
    phases = [
        "model selection by CV on 33 rows of train + val, to choose the head",
        "speaker statistics: on, each speaker's speech vectors normalised",
        "fit on train: 24 rows in 3 speaker-normalised views",
        "refit on train + val: 33 rows in 3 speaker-normalised views",
        "single-modality heads: speech-only and text-only on the same 33 rows",
        "test: UAR",
    ]
    at = _positions(lines, phases)
    assert at == sorted(at)
    assert "val (9 rows in 3 speaker-normalised views) watched" in lines[at[2]]

    _train(split, "--verbose")
    lines = _lines(capsys.readouterr().err)
    at = _positions(lines, phases)
    assert at == sorted(at)
    epochs = [i for i, line in enumerate(lines) if EPOCH.match(line)]
    fit_epochs = [i for i in epochs if at[2] < i < at[3]]
    refit_epochs = [i for i in epochs if at[3] < i < at[4]]
    assert fit_epochs and refit_epochs and len(fit_epochs) + len(refit_epochs) == len(epochs)
