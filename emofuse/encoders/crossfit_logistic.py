"""The scorer of ``kiwi-sparse``: a multinomial logistic regression (class-balanced for
UAR, or not) on sparse features, its inverse regularisation ``C`` picked from a grid by
cross-validated UAR, with out-of-fold class scores for the training rows (cross-fitting).

Folds keep every copy of a text together (rows carry the index of their distinct text)
and are stratified by each text's first label; above :data:`CV_MAX_ROWS` training rows
the grid is compared on a stratified share of whole texts, and the chosen ``C`` is then
cross-fitted once on every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

#: ``C=auto`` tries these (ascending, warm-started) and keeps the best out-of-fold UAR.
C_GRID = (0.1, 0.3, 1.0, 3.0)
#: Above this many training rows, ``C=auto`` compares its grid on a share of this size.
CV_MAX_ROWS = 20_000
MAX_ITER = 500


@dataclass(frozen=True)
class CrossFitted:
    """The model fitted on every row with the chosen ``C``, as logits."""

    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    C: float
    #: Out-of-fold UAR of every ``C`` compared.
    cv_uar: dict[float, float]
    #: Out-of-fold logits of every training row for the chosen ``C``; None when
    #: cross-fitting was off or impossible (a label with a single text).
    oof: np.ndarray | None


@dataclass(frozen=True)
class CrossFitLogistic:
    """``C``: a number, or None to pick it from :data:`C_GRID`; ``folds``: 0 turns
    cross-fitting off; ``balanced``: class-balanced loss. Cross-fitting over
    ``progress_min_rows`` rows shows a progress bar named ``progress_label``."""

    C: float | None
    folds: int
    balanced: bool
    progress_min_rows: int
    progress_label: str

    def fit(
        self, x: sp.csr_matrix, y: np.ndarray, rows: np.ndarray, n_texts: int, n_classes: int
    ) -> CrossFitted:
        """Fit on ``x`` (one row per training row) and the label indices ``y``;
        ``rows[i]`` is the distinct text (of ``n_texts``) that row ``i`` holds."""
        folds = fold_of_texts(rows, y, n_texts, self.folds)
        grid = C_GRID if self.C is None else (self.C,)
        scores: dict[float, np.ndarray] = {}
        uar: dict[float, float] = {}
        if folds is not None:
            if len(grid) > 1 and len(rows) > CV_MAX_ROWS:
                # A large corpus: C is chosen on a stratified share of its texts (the
                # UAR-vs-C curve is flat enough), then cross-fitted once on every row.
                sub = subsample(rows, y)
                sub_folds = fold_of_texts(
                    np.unique(rows[sub], return_inverse=True)[1],
                    y[sub],
                    len(np.unique(rows[sub])),
                    self.folds,
                )
                if sub_folds is not None:
                    for c, oof in self._cross_fit(x[sub], y[sub], sub_folds, grid, n_classes):
                        uar[c] = _uar(y[sub], oof.argmax(axis=1), n_classes)
                    grid = (max(grid, key=lambda c: (round(uar[c], 6), -c)),)
            for c, oof in self._cross_fit(x, y, folds, grid, n_classes):
                scores[c] = oof
                uar.setdefault(c, _uar(y, oof.argmax(axis=1), n_classes))
            best = max(grid, key=lambda c: (round(uar[c], 6), -c))
        else:
            best = grid[0] if len(grid) == 1 else 1.0
        model = self._model(best)
        model.fit(x, y)
        coef, intercept = as_logits(model.coef_, model.intercept_)
        return CrossFitted(coef, intercept, float(best), uar, scores.get(best))

    def _model(self, c: float, warm: bool = False) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=c,
            class_weight="balanced" if self.balanced else None,
            max_iter=MAX_ITER,
            warm_start=warm,
        )

    def _cross_fit(
        self, x: sp.csr_matrix, y: np.ndarray, folds: np.ndarray, grid: Sequence[float], n: int
    ) -> list[tuple[float, np.ndarray]]:
        """Out-of-fold logits for every C of ``grid`` (ascending C, warm-started per fold)."""
        from tqdm.auto import tqdm

        oof = {c: np.zeros((len(y), n), dtype=np.float64) for c in grid}
        k = int(folds.max()) + 1
        bar = tqdm(total=k * len(grid), desc=self.progress_label, leave=False,
                   disable=len(y) < self.progress_min_rows)  # fmt: skip
        for fold in range(k):
            held = folds == fold
            model = self._model(grid[0], warm=True)
            for c in sorted(grid):
                model.set_params(C=c)
                model.fit(x[~held], y[~held])
                coef, intercept = as_logits(model.coef_, model.intercept_)
                full = np.zeros((n, coef.shape[1]))
                full[model.classes_] = coef  # a fold may lack a label: its score stays 0
                bias = np.full(n, -1e3)
                bias[model.classes_] = intercept
                oof[c][held] = x[held] @ full.T + bias
                bar.update(1)
        bar.close()
        return [(c, oof[c]) for c in grid]


def fold_of_texts(rows: np.ndarray, y: np.ndarray, n_texts: int, k: int) -> np.ndarray | None:
    """A fold number per training row, every copy of a text in one fold, stratified by
    the text's first label; None when cross-fitting is off (``k`` 0) or impossible."""
    from sklearn.model_selection import StratifiedKFold

    if k == 0:
        return None
    first = np.unique(rows, return_index=True)[1]
    text_label = y[first]
    smallest = np.bincount(text_label).min()
    if smallest < 2:
        return None  # a label with one text: no fold can hold it out and still learn it
    k = min(k, int(smallest))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    text_fold = np.empty(n_texts, dtype=np.int64)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(n_texts), text_label)):
        text_fold[held] = fold
    return text_fold[rows]


def subsample(rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row positions of about ``CV_MAX_ROWS`` rows: whole texts, stratified by label."""
    from sklearn.model_selection import train_test_split

    first = np.unique(rows, return_index=True)[1]
    share = CV_MAX_ROWS / len(rows)
    try:
        texts, _ = train_test_split(
            rows[first], train_size=share, stratify=y[first], random_state=0
        )
    except ValueError:  # a label too rare to stratify: a plain random share
        texts, _ = train_test_split(rows[first], train_size=share, random_state=0)
    return np.flatnonzero(np.isin(rows, texts))


def as_logits(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's binary model has one row (the positive class): two symmetric rows."""
    if coef.shape[0] == 1:
        return np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def _uar(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    recalls = [np.mean(pred[y == k] == k) for k in range(n) if np.any(y == k)]
    return float(np.mean(recalls))
