"""The fusion head and its training loop on synthetic problems with a known answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from emofuse.model import FusionHead, Standardizer
from emofuse.train import TrainConfig, fit_head


def _blobs(n: int, dim: int, n_classes: int, seed: int, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(0, 3, (n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + rng.normal(0, spread, (n, dim))
    return x.astype(np.float32), y


def _two_halves(n: int, seed: int):
    """4 classes; speech carries bit 1, text carries bit 0: label = 2*a + t.
    Each modality alone can tell only 2 of 4 classes apart (at best 50 % accuracy)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    t = rng.integers(0, 2, n)
    speech = rng.normal(0, 1, (n, 6))
    speech[:, 0] += 3 * (2 * a - 1)
    text = rng.normal(0, 1, (n, 10))
    text[:, 3] += 3 * (2 * t - 1)
    return speech.astype(np.float32), text.astype(np.float32), 2 * a + t


FAST = TrainConfig(epochs=15, batch_size=32, hidden=32, lr=3e-3)


def test_head_shapes_and_modality():
    head = FusionHead(16, 5, hidden=8, input_dims={"text": 10, "speech": 6})
    assert head.modality == "both"
    assert list(head.input_dims) == ["speech", "text"]  # concatenation order, speech first
    assert head(torch.zeros(3, 16)).shape == (3, 5)
    assert FusionHead(4, 2, input_dims={"text": 4}).modality == "text"
    with pytest.raises(ValueError, match="add up"):
        FusionHead(16, 5, input_dims={"speech": 6})
    rebuilt = FusionHead.from_hparams(head.hparams())
    assert rebuilt.hparams() == head.hparams()


def test_standardizer_handles_constant_columns():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    std = Standardizer.fit(x)
    out = std(torch.tensor([[3.0, 6.0]])).numpy()
    assert out[0, 0] == pytest.approx(0.0)
    assert out[0, 1] == pytest.approx(1.0)  # constant column keeps std 1: no blow-up


def test_head_learns_separable_problem():
    x, y = _blobs(600, 12, 4, seed=1)
    xv, yv = _blobs(200, 12, 4, seed=2)
    xt, yt = _blobs(400, 12, 4, seed=3)
    trained = fit_head(x, y, xv, yv, n_classes=4, config=FAST, progress=False)
    accuracy = (trained.predict(xt) == yt).mean()
    assert accuracy > 0.95
    proba = trained.predict_proba(xt)
    assert proba.shape == (400, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert len(trained.history) == FAST.epochs
    assert {"train_loss", "val_uar", "val_accuracy", "val_loss"} <= set(trained.history[0])
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]


def test_fusion_beats_each_single_modality():
    s, t, y = _two_halves(800, seed=5)
    sv, tv, yv = _two_halves(200, seed=6)
    st, tt, yt = _two_halves(600, seed=7)
    scores = {}
    for name, (xtr, xva, xte, dims) in {
        "speech": (s, sv, st, {"speech": 6}),
        "text": (t, tv, tt, {"text": 10}),
        "both": (
            np.hstack([s, t]),
            np.hstack([sv, tv]),
            np.hstack([st, tt]),
            {"speech": 6, "text": 10},
        ),
    }.items():
        trained = fit_head(
            xtr, y, xva, yv, n_classes=4, config=FAST, input_dims=dims, progress=False
        )
        assert trained.modality == name
        scores[name] = (trained.predict(xte) == yt).mean()
    assert scores["speech"] < 0.6 and scores["text"] < 0.6
    assert scores["both"] > 0.9
    assert scores["both"] > max(scores["speech"], scores["text"]) + 0.3


def test_seeded_runs_repeat_exactly_and_seeds_matter():
    x, y = _blobs(300, 8, 3, seed=11, spread=3.0)
    xv, yv = _blobs(100, 8, 3, seed=12, spread=3.0)
    config = dataclasses.replace(FAST, epochs=5)
    runs = [fit_head(x, y, xv, yv, n_classes=3, config=config, progress=False) for _ in range(2)]
    a, b = (r.state_dict() for r in runs)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert runs[0].history == runs[1].history
    other = fit_head(
        x, y, xv, yv, n_classes=3, config=dataclasses.replace(config, seed=1), progress=False
    )
    assert not torch.equal(other.state_dict()["head.fc1.weight"], a["head.fc1.weight"])


def test_training_leaves_global_rng_alone():
    x, y = _blobs(64, 4, 2, seed=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_head(x, y, n_classes=2, config=dataclasses.replace(FAST, epochs=1), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_best_epoch_is_chosen_on_validation_uar():
    x, y = _blobs(300, 8, 3, seed=21, spread=4.0)
    xv, yv = _blobs(150, 8, 3, seed=22, spread=4.0)
    trained = fit_head(x, y, xv, yv, n_classes=3, config=FAST, progress=False)
    uars = [row["val_uar"] for row in trained.history]
    best = trained.history[trained.best_epoch - 1]
    assert best["val_uar"] == max(uars)
    ties = [row for row in trained.history if row["val_uar"] == max(uars)]
    assert best["val_loss"] == min(row["val_loss"] for row in ties)
    # the kept weights are the best epoch's, not the last one's
    pred = trained.predict(xv)
    from emofuse.metrics import unweighted_average_recall

    assert unweighted_average_recall(yv, pred, 3) == pytest.approx(best["val_uar"])


def test_no_validation_keeps_last_epoch_and_class_weighting_runs(capsys):
    x, y = _blobs(200, 6, 3, seed=31)
    keep = y != 2
    x = np.vstack([x[keep], x[~keep][:10]])  # class 2 rare
    y = np.concatenate([y[keep], np.full(10, 2)])
    config = dataclasses.replace(FAST, epochs=3, class_weighting=True)
    trained = fit_head(x, y, n_classes=3, config=config, progress=True)
    assert trained.best_epoch == 3
    assert "val_uar" not in trained.history[-1]
    assert "epoch   3/3" in capsys.readouterr().err


def test_bad_inputs_are_named():
    x, y = _blobs(20, 4, 2, seed=0)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_head(x, y, n_classes=2, config=FAST, progress=False)
    with pytest.raises(ValueError, match="class indices"):
        fit_head(np.ones((4, 2)), np.array([0, 1, 2, 5]), n_classes=3, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"epoch": 3})
