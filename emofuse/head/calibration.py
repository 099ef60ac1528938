"""Temperature scaling: one number T, fitted on held-out logits, that divides every
logit before the softmax. It changes how confident the model is, never which label it
picks (argmax is unchanged), so UAR and accuracy stay as they are while the
probabilities come to mean what they say (Guo et al., 2017).

Fit it on held-out logits, never on test (:func:`fit_temperature`): the default recipe
fits it on the chosen head's out-of-fold logits from model selection
(:func:`emofuse.head.selection.cv_temperature`), ``calibrate`` on the val part. T > 1 softens an
over-confident model, T < 1 sharpens an under-confident one; T = 1 is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Temperatures searched (log-uniformly); the ends guard against a degenerate val part.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (numerically stable), for logits
    already in hand (analysis, reference checks). Scoring vectors with a head goes through
    :func:`emofuse.head.score.probabilities_from_features` (``TrainedHead.predict_proba``
    too), never through this function."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float, smoothing: float = 0.0) -> float:
    """Cross-entropy of ``softmax(logits / T)`` against the labels, each taken as
    ``1 - smoothing`` on its class and the rest shared by the others."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    true = log_p[rows, y]
    if not smoothing:
        return float(-true.mean())
    others = (log_p.sum(axis=1) - true) / max(1, log_p.shape[1] - 1)
    return float(-((1 - smoothing) * true + smoothing * others).mean())


def fit_temperature(logits: np.ndarray, y_true: Sequence[int], smoothing: float = 0.0) -> float:
    """The temperature that minimises the negative log-likelihood of ``y_true`` under
    ``softmax(logits / T)``, searched over [0.05, 20] on a log scale (bounded Brent).
    With fewer than two rows, or a single class, there is nothing to fit: 1.0.

    ``smoothing`` (e.g. ``1 / (n + 2)``, Laplace's rule of succession): the labels count
    as ``1 - smoothing`` sure, so that logits that separate every held-out row are not
    sharpened without end (certainty from a few dozen rows)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(
            f"fit_temperature needs (rows, classes) logits and one label per row, "
            f"got {z.shape} and {y.shape}"
        )
    if len(y) < 2 or len(np.unique(y)) < 2:
        return 1.0
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{z.shape[1] - 1}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    result = minimize_scalar(
        lambda log_t: _nll(z, y, float(np.exp(log_t)), smoothing),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(np.exp(result.x))
    # never worse than leaving the model alone
    return best if _nll(z, y, best, smoothing) <= _nll(z, y, 1.0, smoothing) else 1.0
