"""Cross-validation for model selection: folds grouped by speaker (or script), and
out-of-fold logits of logistic regressions (one warm-started regularisation path per
fold) and of the small-data MLP, scored by UAR per view of the held-out rows.

A *view* is one way of presenting a fold's held-out rows (e.g. speaker-normalised with
statistics from 3 random clips, draw 2); without speaker normalisation there is one,
``("all", 0)``. Used by :mod:`emofuse.head.selection` and
:mod:`emofuse.head.speaker_choice`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emofuse.head.config import clip_limit
from emofuse.head.speaker_stats import speaker_key
from emofuse.metrics import unweighted_average_recall

MAX_FOLDS = 5
#: gradient tolerance of the cross-validation fits (final fits are exact): predictions
#: as the exact fits' on the rows measured, at a third of the cost
CV_TOLERANCE = 1e-4

#: a view of the held-out rows: (how the speakers are heard, draw)
View = tuple[str, int]


@dataclass
class Fold:
    """One fold as the models see it: training rows (and, per row, the index of the
    labelled row it came from), and the held-out rows per view."""

    train: np.ndarray
    train_index: np.ndarray
    tests: dict[View, np.ndarray]


def cv_folds(
    y: np.ndarray,
    speakers: Iterable[Any] | None = None,
    scripts: Iterable[Any] | None = None,
    *,
    max_folds: int = MAX_FOLDS,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """A fold number per row and the scheme (``speaker``, ``script`` or ``stratified``):
    grouped by speaker with >= 3 named speakers (rows without a name each their own
    group), else by script with >= 3 scripts, else stratified by class."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    for scheme, names in (("speaker", speakers), ("script", scripts)):
        if names is None:
            continue
        keys = [speaker_key(s) for s in names]
        if len({k for k in keys if k is not None}) >= 3:
            keys = [k if k is not None else f"\0row{i}" for i, k in enumerate(keys)]
            return _group_folds(np.asarray(keys, dtype=object), max_folds, rng), scheme
    folds = np.zeros(len(y), dtype=np.int64)
    n_folds = max(2, min(max_folds, len(y) // 2))
    start = 0
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        folds[rows] = (start + np.arange(len(rows))) % n_folds
        start += len(rows)
    return folds, "stratified"


def _group_folds(keys: np.ndarray, max_folds: int, rng: np.random.Generator) -> np.ndarray:
    names, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    n_folds = min(max_folds, len(names))
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties random
    sizes = np.zeros(n_folds, dtype=np.int64)
    fold_of = np.zeros(len(names), dtype=np.int64)
    for group in order:
        fold_of[group] = int(np.argmin(sizes))
        sizes[fold_of[group]] += counts[group]
    return fold_of[inverse]


def logistic_path(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cs: Sequence[float],
    *,
    tolerance: float = CV_TOLERANCE,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Class-balanced logistic regressions (the objective of
    :func:`emofuse.head.logistic.fit_logistic`) for every ``C`` in ``cs``, each started
    from the solution at the next smaller ``C`` (a regularisation path: about 3x faster
    than cold starts, the same predictions at this tolerance)."""
    import torch
    from torch.nn import functional as F

    from emofuse.head.logistic import balanced_weights
    from emofuse.torch_threads import one_thread

    xs = torch.as_tensor(np.asarray(x, dtype=np.float64))
    ys = torch.as_tensor(np.asarray(y, dtype=np.int64))
    row_weight = torch.as_tensor(balanced_weights(ys.numpy(), n_classes))
    if init is None:
        init = (np.zeros((n_classes, xs.shape[1])), np.zeros(n_classes))
    weight = torch.tensor(np.asarray(init[0], np.float64), requires_grad=True)
    bias = torch.tensor(np.asarray(init[1], np.float64), requires_grad=True)
    out = {}
    with one_thread():
        for c in sorted(cs):
            optimizer = torch.optim.LBFGS(
                [weight, bias], lr=1.0, max_iter=500, tolerance_grad=tolerance,
                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
            )  # fmt: skip

            def objective(c=c, optimizer=optimizer) -> torch.Tensor:
                optimizer.zero_grad()
                losses = F.cross_entropy(xs @ weight.T + bias, ys, reduction="none")
                loss = (row_weight * losses).sum() / len(ys) + (weight**2).sum() / (2 * c * len(ys))
                loss.backward()
                return loss

            optimizer.step(objective)
            out[c] = (weight.detach().numpy().copy(), bias.detach().numpy().copy())
    return out


def plain_folds(x, folds) -> list[Fold]:
    out = []
    for f in range(int(folds.max()) + 1):
        tr = np.flatnonzero(folds != f)
        out.append(Fold(x[tr], tr, {("all", 0): x[folds == f]}))
    return out


def oof_logistic(fold_data, y, folds, n_classes, cs, init=None):
    """Out-of-fold logits of the logistic regressions, per ``C`` and view, and each
    fold's model per ``C`` (weight, bias, mean, std). ``init``: per fold, a model
    (weight, bias, ...) to start the path from (e.g. the same fold's without speaker
    normalisation)."""
    views = list(fold_data[0].tests)
    out = {c: {v: np.zeros((len(y), n_classes)) for v in views} for c in cs}
    models: dict[float, list] = {c: [] for c in cs}
    limit = clip_limit()
    for f, fold in enumerate(fold_data):
        mean, std = fold.train.mean(axis=0), fold.train.std(axis=0)
        std = np.where(std < 1e-5, 1.0, std)
        start = None if init is None else init[f][:2]
        path = logistic_path(
            np.clip((fold.train - mean) / std, -limit, limit), y[fold.train_index], n_classes,
            cs, init=start,
        )  # fmt: skip
        for c, (weight, bias) in path.items():
            models[c].append((weight, bias, mean, std))
            for v in views:
                z = np.clip((fold.tests[v] - mean) / std, -limit, limit)
                out[c][v][folds == f] = z @ weight.T + bias
    return out, models


def oof_mlp(fold_data, y, folds, n_classes, config, input_dims) -> dict[View, np.ndarray]:
    from emofuse.head.train import fit_head

    views = list(fold_data[0].tests)
    out = {v: np.zeros((len(y), n_classes)) for v in views}
    mlp_config = replace(config, head="mlp+linear", logistic_blend=0.0, calibrate=False)
    for f, fold in enumerate(fold_data):
        head = fit_head(
            fold.train, y[fold.train_index], n_classes=n_classes, config=mlp_config,
            input_dims=input_dims, progress=False,
        )  # fmt: skip
        for v in views:
            out[v][folds == f] = head.logits(fold.tests[v])
    return out


def score(y, logits: Mapping[View, np.ndarray], n_classes) -> dict[str, Any]:
    """UAR of the pooled out-of-fold predictions (all draws together) per view, and the
    mean over views."""
    by_view: dict[str, float] = {}
    for name in dict.fromkeys(v[0] for v in logits):
        draws = [v for v in logits if v[0] == name]
        truth = np.concatenate([y] * len(draws))
        pred = np.concatenate([logits[v].argmax(axis=1) for v in draws])
        by_view[name] = unweighted_average_recall(truth, pred, n_classes)
    return {"uar": float(np.mean(list(by_view.values()))), "by_view": by_view}
