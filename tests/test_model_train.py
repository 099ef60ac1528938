"""The fusion head and its training loop on synthetic problems with a known answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from emofuse.head.model import FusionHead, Standardizer
from emofuse.head.train import TrainConfig, fit_head
from emofuse.torch_threads import one_thread


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


FAST = TrainConfig(recipe="paper", epochs=15, batch_size=32, hidden=32, lr=3e-3)


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


def test_standardizer_clips_what_the_floor_misses():
    """A unit that is 0 for every training speaker but one (std above the floor) must not
    put a new speaker's value at thousands of standard deviations."""
    from emofuse.head.config import Z_LIMIT

    x = np.zeros((200, 2))
    x[:, 0] = np.random.default_rng(0).normal(size=200)
    x[0, 1] = 1e-3  # std 7e-5: above the 1e-5 floor
    std = Standardizer.fit(x)
    assert std.limit == Z_LIMIT
    out = std(torch.tensor([[50.0, 0.2], [-50.0, -0.2], [0.5, 0.0]])).numpy()
    assert out[0].tolist() == [Z_LIMIT, Z_LIMIT] and out[1].tolist() == [-Z_LIMIT, -Z_LIMIT]
    assert abs(out[2, 0]) < 1.0  # values in range pass through
    unclipped = Standardizer(2, limit=None)  # how bundles saved before the limit load
    unclipped.load_state_dict(std.state_dict())
    assert unclipped(torch.tensor([[50.0, 0.2]])).numpy()[0, 1] > 1000


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
    trained = fit_head(x, y, n_classes=3, config=config, progress=True, verbose=True)
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


# ------------------------------------------------------------------ recipes and the loop


def test_paper_recipe_reproduces_the_published_training_exactly():
    """The frozen copy of fit_head as published (tests/support/frozen_paper_train.py) and the
    `paper` recipe give the same weights, history and probabilities, with and without a
    validation part, with the published defaults and with class weighting.

    Both run on one torch thread: fit_head always does (emofuse.torch_threads.one_thread,
    for speed), and MKL's float32 matrix products sum in a different order on two threads
    than on one (e.g. a last batch of 6 rows through the 12 -> 256 layer), which moves
    weights and losses by about 1e-8. Same thread count, same arithmetic: equal to the bit."""
    from support.frozen_paper_train import frozen_fit_head

    paper = TrainConfig(recipe="paper").resolved()
    published = {"batch_size": 32, "epochs": 10, "lr": 1e-3, "weight_decay": 1e-2,
                 "hidden": 256, "dropout": 0.2, "class_weighting": False, "head": "mlp"}  # fmt: skip
    assert {k: getattr(paper, k) for k in published} == published
    x, y = _blobs(150, 12, 4, seed=41, spread=4.0)
    xv, yv = _blobs(60, 12, 4, seed=42, spread=4.0)
    xt, _ = _blobs(50, 12, 4, seed=43, spread=4.0)
    for config, val in (
        (paper, (xv, yv)),
        (paper, (None, None)),
        (dataclasses.replace(paper, class_weighting=True, seed=3, batch_size=16), (xv, yv)),
    ):
        with one_thread():
            head, standardizer, history, best_epoch = frozen_fit_head(x, y, *val, 4, config)
        trained = fit_head(x, y, *val, n_classes=4, config=config, progress=False)
        assert trained.history == history and trained.best_epoch == best_epoch
        expected = {f"head.{k}": v for k, v in head.state_dict().items()}
        got = trained.state_dict()
        for key, value in expected.items():
            assert torch.equal(got[key], value), key
        with torch.no_grad():
            proba = torch.softmax(head(standardizer(torch.from_numpy(xt))), dim=1).numpy()
        np.testing.assert_array_equal(trained.predict_proba(xt), proba)


def test_run_epochs_stops_on_patience_and_on_request():
    from emofuse.head.train import run_epochs

    result = run_epochs(
        6, lambda epoch: 1.0 / epoch, n_classes=2,
        validate=lambda: (np.array([0, 1]), np.array([0, 1]), 0.1), snapshot=dict, patience=2,
    )  # fmt: skip
    assert len(result.history) == 3  # perfect val at epoch 1, no gain at 2 and 3
    assert result.best_epoch == 1
    calls = []
    result = run_epochs(
        5, lambda e: calls.append(e) or 0.0, n_classes=2, stop=lambda: len(calls) == 2
    )
    assert calls == [1, 2] and result.best_epoch == 2 and result.best_state is None


def test_best_epoch_rule_prefers_uar_then_lower_loss_then_earlier():
    from emofuse.head.train import BestEpoch

    rule = BestEpoch()
    rows = [(0.5, 1.0), (0.7, 0.9), (0.7, 0.8), (0.7, 0.8), (0.6, 0.1)]
    for epoch, (uar, loss) in enumerate(rows, start=1):
        rule.offer(epoch, {"val_uar": uar, "val_loss": loss}, lambda e=epoch: {"epoch": e})
    assert rule.epoch == 3 and rule.state == {"epoch": 3} and rule.since == 2


def test_small_data_recipe_trains_at_least_min_steps():
    x, y = _blobs(40, 6, 2, seed=51)  # 2 steps per epoch at batch 32
    config = TrainConfig(recipe="small-data", epochs=3, min_steps=50, hidden=8)
    trained = fit_head(x, y, n_classes=2, config=config, progress=False)
    assert len(trained.history) == 25 and trained.best_epoch == 25
    few = fit_head(
        x, y, n_classes=2, config=dataclasses.replace(config, min_steps=2), progress=False
    )
    assert len(few.history) == 3  # epochs is a floor too


def test_small_data_refit_uses_train_and_val_for_the_chosen_epochs():
    x, y = _blobs(60, 6, 3, seed=61, spread=3.0)
    xv, _ = _blobs(30, 6, 3, seed=62, spread=3.0)
    yv = np.random.default_rng(0).integers(0, 3, 30)  # unlearnable: val stops improving
    config = TrainConfig(
        recipe="small-data", min_steps=40, hidden=8, lr=1e-2, patience=3, refit=True
    )
    trained = fit_head(x, y, xv, yv, n_classes=3, config=config, progress=False)
    plain = fit_head(
        x, y, xv, yv, n_classes=3, config=dataclasses.replace(config, refit=False), progress=False
    )
    assert trained.history == plain.history and trained.best_epoch == plain.best_epoch
    assert len(trained.history) < 20  # patience 3 stopped the 20-epoch budget early
    both = np.vstack([x, xv])
    np.testing.assert_allclose(trained.standardizer.mean.numpy(), both.mean(axis=0), rtol=1e-5)
    assert not torch.equal(trained.head.fc1.weight, plain.head.fc1.weight)


def test_linear_head_kind_round_trips_and_learns():
    x, y = _blobs(300, 8, 3, seed=71)
    xt, yt = _blobs(200, 8, 3, seed=72)
    config = TrainConfig(recipe="small-data", head="linear", min_steps=200)
    trained = fit_head(x, y, n_classes=3, config=config, progress=False)
    assert trained.head.kind == "linear" and not hasattr(trained.head, "fc1")
    assert (trained.predict(xt) == yt).mean() > 0.9
    rebuilt = FusionHead.from_hparams(trained.head.hparams())
    rebuilt.load_state_dict(trained.head.state_dict())
    assert rebuilt.kind == "linear"
    assert "kind" not in FusionHead(4, 2).hparams()  # mlp bundles are written as before
    with pytest.raises(ValueError, match="head must be auto or one of"):
        TrainConfig(head="tree")
    with pytest.raises(ValueError, match="recipe must be one of"):
        TrainConfig(recipe="fast")


def test_small_data_keeps_the_last_epoch_without_patience_and_fits_a_temperature():
    x, y = _blobs(90, 6, 3, seed=81, spread=3.0)
    xv, yv = _blobs(60, 6, 3, seed=82, spread=3.0)
    config = TrainConfig(recipe="small-data", min_steps=30, hidden=16, lr=1e-2, calibrate=True)
    trained = fit_head(x, y, xv, yv, n_classes=3, config=config, progress=False)
    assert trained.best_epoch == len(trained.history) == 10  # budget: 30 steps, 3 per epoch
    assert "val_uar" in trained.history[-1]  # val is watched
    assert trained.temperature != 1.0
    from emofuse.head.calibration import softmax

    np.testing.assert_allclose(
        trained.predict_proba(xv), softmax(trained.logits(xv), trained.temperature), rtol=1e-5
    )
    plain = fit_head(
        x, y, xv, yv, n_classes=3, config=dataclasses.replace(config, calibrate=False),
        progress=False,
    )  # fmt: skip
    assert plain.temperature == 1.0
    assert fit_head(x, y, xv, yv, n_classes=3, config=TrainConfig(recipe="paper", epochs=2),
                    progress=False).temperature == 1.0  # fmt: skip


def test_a_trained_head_scores_through_the_one_probability_path():
    """TrainedHead.predict_proba/predict are probabilities_from_features (temperature,
    softmax, and the {modality: vectors} form included), not a second implementation."""
    from emofuse.head.score import probabilities_from_features

    x, y = _blobs(60, 6, 3, seed=91, spread=3.0)
    dims = {"speech": 4, "text": 2}
    trained = fit_head(x, y, n_classes=3, config=FAST, input_dims=dims, progress=False)
    trained.temperature = 2.5
    by_modality = {"speech": x[:, :4], "text": x[:, 4:]}
    proba = trained.predict_proba(by_modality)
    np.testing.assert_array_equal(proba, probabilities_from_features(trained, x))
    np.testing.assert_array_equal(trained.predict_proba(x), proba)
    np.testing.assert_array_equal(trained.predict(by_modality), proba.argmax(axis=1))
    with pytest.raises(Exception, match="text"):
        trained.predict_proba({"speech": x[:, :4]})  # a missing block is named
