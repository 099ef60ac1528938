"""A multinomial logistic regression fitted exactly (full batch, L-BFGS), in torch.

The small-data recipe (:mod:`emofuse.head.train`) averages its MLP with this model: on held-out
speakers a plain logistic regression beats a regularised MLP once there are a few dozen
clips per emotion, and the MLP beats it below that; their average is at least as good as
either across sample sizes (``bench/learning_curves.py``). The objective is
scikit-learn's ``LogisticRegression``:

    C * sum_i w_i * CE(x_i, y_i) + 0.5 * ||W||^2      (the bias is not penalised)

so ``C=1`` on standardised inputs is the baseline a user would reach for, and the fitted
weights agree with scikit-learn's to optimiser tolerance (a test checks it). Fitted in
float64 on one thread: the same rows give the same weights on every run. Full batch: at
450k rows x 344 features the float64 copy takes about 1.2 GB.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from emofuse.torch_threads import one_thread

#: L-BFGS iterations; convergence (gradient below TOLERANCE) usually comes far earlier.
MAX_ITER = 500
TOLERANCE = 1e-7


def class_balance(y: np.ndarray, n_classes: int, k: int | None = None) -> np.ndarray:
    """Per-class weights ``n / (k * count(class))`` (0 for an absent class), so every class
    weighs the same in a loss whatever its count; ``k`` defaults to the number of classes
    present (scikit-learn's ``"balanced"``)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    k = int((counts > 0).sum()) if k is None else k
    return np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0)


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights of :func:`class_balance` (scikit-learn's ``"balanced"``)."""
    return class_balance(y, n_classes)[y]


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    c: float = 1.0,
    balanced: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(n_classes, dim)`` and bias ``(n_classes,)`` of the L2-penalised
    multinomial logistic regression of ``y`` (class indices) on the rows of ``x``."""
    if not c > 0:
        raise ValueError(f"C must be > 0, not {c}")
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ys = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if xs.ndim != 2 or len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(f"need a non-empty matrix and one label per row, got {tuple(xs.shape)}")
    row_weight = torch.as_tensor(
        balanced_weights(ys.numpy(), n_classes) if balanced else np.ones(len(ys))
    )
    weight = torch.zeros(n_classes, xs.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=MAX_ITER, tolerance_grad=TOLERANCE,
        tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        losses = F.cross_entropy(xs @ weight.T + bias, ys, reduction="none")
        # scaled by 1 / (C n) so the gradient tolerance does not depend on the row count
        loss = (row_weight * losses).sum() / len(ys) + (weight**2).sum() / (2 * c * len(ys))
        loss.backward()
        return loss

    with one_thread():
        optimizer.step(objective)
    return weight.detach().numpy().copy(), bias.detach().numpy().copy()
