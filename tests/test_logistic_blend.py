"""The exact logistic regression (emofuse.head.logistic) and its blend into the head."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from emofuse.head.logistic import balanced_weights, fit_logistic
from emofuse.head.train import TrainConfig, fit_head


def _problem(n: int, dim: int, k: int, seed: int, overlap: float = 2.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(0, 1, (k, dim))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, overlap, (n, dim))).astype(np.float32), y


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("c", [0.05, 1.0])
def test_fit_logistic_matches_scikit_learn(c, balanced):
    x, y = _problem(150, 12, 4, seed=1)
    y[:100] = np.where(y[:100] == 3, 0, y[:100])  # imbalanced: class 3 is rare
    weight, bias = fit_logistic(x, y, 4, c=c, balanced=balanced)
    ref = LogisticRegression(
        C=c, max_iter=10_000, tol=1e-10, class_weight="balanced" if balanced else None
    ).fit(x, y)
    np.testing.assert_allclose(weight, ref.coef_, atol=2e-3)
    # the bias is free up to a shift shared by all classes; the logits' differences are not
    ours, theirs = x @ weight.T + bias, ref.decision_function(x)
    np.testing.assert_allclose(ours - ours.mean(1, keepdims=True),
                               theirs - theirs.mean(1, keepdims=True), atol=5e-3)  # fmt: skip


def test_fit_logistic_repeats_exactly_and_refuses_bad_input():
    x, y = _problem(80, 5, 3, seed=2)
    first, second = fit_logistic(x, y, 3), fit_logistic(x, y, 3)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_logistic(x, y, 3, c=0)
    with pytest.raises(ValueError, match="one label per row"):
        fit_logistic(x, y[:-1], 3)


def test_balanced_weights_give_every_present_class_the_same_total():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    w = balanced_weights(y, 4)  # class 3 absent
    totals = np.bincount(y, weights=w, minlength=4)
    np.testing.assert_allclose(totals[:3], len(y) / 3)
    assert totals[3] == 0


def test_the_blend_is_the_average_of_the_two_models_logits():
    x, y = _problem(120, 6, 3, seed=3)
    xv, yv = _problem(60, 6, 3, seed=4)
    base = TrainConfig(min_steps=30, hidden=16, logistic_blend=0.0, refit=False)
    mlp = fit_head(x, y, xv, yv, n_classes=3, config=base, progress=False)
    blended = fit_head(
        x, y, xv, yv, n_classes=3, config=dataclasses.replace(base, logistic_blend=0.3),
        progress=False,
    )  # fmt: skip
    xs = mlp.standardizer(torch.from_numpy(x)).numpy()
    weight, bias = fit_logistic(xs, y, 3, balanced=True)  # the recipe weights classes
    expected = 0.7 * mlp.logits(xv) + 0.3 * (
        mlp.standardizer(torch.from_numpy(xv)).numpy() @ weight.T + bias
    )
    np.testing.assert_allclose(blended.logits(xv), expected, atol=1e-4)
    assert blended.config.logistic_blend == 0.3


def test_the_recipe_blends_by_default_and_the_refit_blends_on_train_plus_val():
    x, y = _problem(90, 6, 3, seed=5)
    xv, yv = _problem(45, 6, 3, seed=6)
    config = TrainConfig(min_steps=30, hidden=16)
    assert config.resolved().logistic_blend == 0.5 and config.resolved().class_weighting
    trained = fit_head(x, y, xv, yv, n_classes=3, config=config, progress=False)
    alone = fit_head(
        x, y, xv, yv, n_classes=3, config=dataclasses.replace(config, logistic_blend=0.0),
        progress=False,
    )  # fmt: skip
    both_x, both_y = np.vstack([x, xv]), np.concatenate([y, yv])
    xs = alone.standardizer(torch.from_numpy(both_x)).numpy()  # the refit's standardiser
    weight, bias = fit_logistic(xs, both_y, 3, balanced=True)
    probe, _ = _problem(30, 6, 3, seed=8)
    probe_s = alone.standardizer(torch.from_numpy(probe)).numpy()
    expected = 0.5 * alone.logits(probe) + 0.5 * (probe_s @ weight.T + bias)
    np.testing.assert_allclose(trained.logits(probe), expected, atol=1e-4)


def test_the_paper_recipe_and_the_plain_mlp_head_never_blend():
    paper = TrainConfig(recipe="paper").resolved()
    assert paper.logistic_blend == 0.0 and paper.class_weighting is False
    assert TrainConfig(head="mlp").resolved().logistic_blend == 0.0
    with pytest.raises(ValueError, match="logistic_blend needs a head with a linear part"):
        TrainConfig(head="mlp", logistic_blend=0.5)
    with pytest.raises(ValueError, match=r"logistic_blend must be in \[0, 1\]"):
        TrainConfig(logistic_blend=1.5)
    with pytest.raises(ValueError, match="logistic_c must be > 0"):
        TrainConfig(logistic_c=0)
    # checked against the head the recipe resolves to, before any work
    with pytest.raises(ValueError, match="the paper recipe never blends"):
        TrainConfig(recipe="paper", logistic_blend=0.5)
    with pytest.raises(ValueError, match="the paper recipe never blends"):
        TrainConfig(recipe="paper", head="linear", logistic_blend=0.5)
    assert TrainConfig(recipe="paper", head="linear").resolved().logistic_blend == 0.0


def test_blending_into_a_linear_head_is_a_weighted_average_of_two_linear_models():
    x, y = _problem(100, 5, 3, seed=9)
    config = TrainConfig(
        head="linear", dropout=0.0, min_steps=20, logistic_blend=1.0, class_weighting=False
    )
    trained = fit_head(x, y, n_classes=3, config=config, progress=False)
    xs = trained.standardizer(torch.from_numpy(x)).numpy()
    weight, bias = fit_logistic(xs, y, 3)
    np.testing.assert_allclose(trained.head.fc2.weight.detach().numpy(), weight, atol=1e-5)
