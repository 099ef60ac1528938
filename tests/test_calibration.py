"""Temperature scaling, ECE and NLL on synthetic probabilities whose calibration is known."""

from __future__ import annotations

import numpy as np
import pytest

from emofuse.head.calibration import fit_temperature, softmax
from emofuse.metrics import (
    calibration_bins,
    expected_calibration_error,
    negative_log_likelihood,
    plot_reliability,
    probability_metrics,
)


def _calibrated(n: int, k: int, seed: int, sharpen: float = 1.0):
    """Logits whose softmax is the true class distribution; labels drawn from it. Returns
    the logits multiplied by ``sharpen`` (> 1: over-confident by exactly that factor)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, k))
    p = softmax(logits)
    y = np.array([rng.choice(k, p=row) for row in p])
    return logits * sharpen, y


def test_temperature_undoes_a_known_overconfidence():
    logits, y = _calibrated(4000, 4, seed=0, sharpen=3.0)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(y, softmax(logits))
    after = expected_calibration_error(y, softmax(logits, t))
    assert after < before / 3 and after < 0.03
    assert negative_log_likelihood(y, softmax(logits, t)) < negative_log_likelihood(
        y, softmax(logits)
    )
    # the label never changes
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_temperature_of_a_calibrated_model_is_about_one_and_degenerate_sets_give_one():
    logits, y = _calibrated(4000, 3, seed=1)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)
    assert fit_temperature(logits[:1], y[:1]) == 1.0
    assert fit_temperature(logits[:5], np.zeros(5, dtype=int)) == 1.0
    with pytest.raises(ValueError, match="one label per row"):
        fit_temperature(logits, y[:-1])


def test_smoothing_stops_separable_logits_from_being_sharpened_to_certainty():
    """Held-out logits that put every row right: without smoothing the fit runs to the
    lowest temperature (probability 1.0); with Laplace's 1 / (n + 2) the confidence stops
    near (n + 1) / (n + 2). On logits that are not separable it changes T only a little."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    logits = np.eye(3)[y] * 2.0 + rng.normal(0, 0.3, (40, 3))  # right, but timid
    assert fit_temperature(logits, y) == pytest.approx(0.05, rel=0.01)  # the search's end
    smoothing = 1 / (len(y) + 2)
    t = fit_temperature(logits, y, smoothing=smoothing)
    confidence = softmax(logits, t).max(axis=1).mean()
    assert 0.05 * 1.5 < t < 1.0 and abs(confidence - (1 - smoothing)) < 0.02
    noisy, y_noisy = _calibrated(4000, 4, seed=2, sharpen=2.0)
    plain = fit_temperature(noisy, y_noisy)
    assert fit_temperature(noisy, y_noisy, smoothing=1 / 4002) == pytest.approx(plain, rel=0.02)
    with pytest.raises(ValueError, match="smoothing"):
        fit_temperature(logits, y, smoothing=1.0)


def test_ece_bins_and_values():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    y = np.array([0, 1, 0, 1])
    bins = calibration_bins(y, proba, n_bins=10)
    assert bins["count"].sum() == 4 and bins["count"][8] == 2  # 0.9 falls in (0.8, 0.9]
    # bins: 0.9 -> acc 0.5 (gap 0.4, 2 clips); 0.6 -> acc 1 (0.4); 0.8 -> acc 1 (0.2)
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(
        (2 * 0.4 + 0.4 + 0.2) / 4
    )
    perfect = np.eye(3)[[0, 1, 2]]
    assert expected_calibration_error([0, 1, 2], perfect) == 0.0
    assert negative_log_likelihood([0, 1, 2], perfect) == pytest.approx(0.0, abs=1e-9)
    metrics = probability_metrics(["a", "b"], np.array([[0.7, 0.3], [0.4, 0.6]]), ["a", "b"])
    assert set(metrics) == {"ece", "nll"}
    assert metrics["nll"] == pytest.approx(-(np.log(0.7) + np.log(0.6)) / 2)


def test_reliability_diagram_is_written(tmp_path):
    logits, y = _calibrated(300, 4, seed=2, sharpen=2.0)
    out = plot_reliability(y, softmax(logits), tmp_path / "evaluation" / "reliability.png")
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
