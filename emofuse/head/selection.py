"""The default recipe's model selection: which head to train, and whether (and how
strongly) to normalise each speaker, chosen by cross-validated UAR on the labelled rows.

Candidates, all scored from out-of-fold logits of one set of fits per fold:

- the small-data MLP (``mlp+linear``, no blend) and class-balanced logistic regressions
  on standardised vectors, ``C`` in :data:`C_GRID` (one warm-started path per fold);
- their blends ``(1 - w) * mlp + w * logistic`` (:data:`BLEND_WEIGHTS`, with ``C = 1``
  and with the best ``C``), from those logits without training again. Today's default
  (``w = 0.5``, ``C = 1``) is one of them; a pure logistic regression is ``w = 1``.

The rule (:func:`choose`): the logistic regression with the best CV UAR is the incumbent,
and another candidate wins only by beating it by more than :data:`LR_MARGIN`, so the
default stays level with a tuned linear model where the CV cannot tell them apart (with
the plain maximum over all 14 candidates, the winner's curse cost 0.009 UAR on EmoDB
with all clips; ``bench/speaker_adapt.py``). Every winner is a :class:`TrainConfig` that
  :func:`~emofuse.head.train.fit_head` trains in today's bundle format (the blend is folded
  into the head's last layer and linear part).

Folds (:mod:`emofuse.head.cv`) are grouped by speaker when the rows name at least 3
speakers, by script otherwise, stratified by class when neither; seeded.

Speaker normalisation, ``off`` / ``auto`` / ``on``, is decided first
(:mod:`emofuse.head.speaker_choice`: ``k`` and the decision, with the logistic
regression), then the head candidates are scored on the representation chosen (held-out
speakers heard through few, all or emotion-skewed clips) and the winner is trained by
:func:`fit_selected` on normalised rows, with the state
(:class:`~emofuse.head.speaker_norm.SpeakerNorm`) fitted on train + val.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from emofuse.head.config import TrainConfig
from emofuse.head.cv import MAX_FOLDS, cv_folds, oof_logistic, oof_mlp, plain_folds, score
from emofuse.head.speaker_choice import (
    SPEAKER_NORM_MODES,
    TRAIN_FEW,
    decide_speaker_norm,
    fit_composition,
    fit_scorer,
)
from emofuse.head.speaker_norm import SpeakerNorm
from emofuse.head.speaker_stats import speaker_key
from emofuse.head.training_log import TrainingLog

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_NAME = "mlp+logistic w=0.5 C=1"
#: CV UAR by which a candidate must beat the best logistic regression to be chosen
LR_MARGIN = 0.01


@dataclass
class Selection:
    """The winner: ``config`` (what :func:`~emofuse.head.train.fit_head` trains), the
    speaker normalisation (``k`` and the ``columns`` it touches, or None), and ``record``
    (candidates, CV scores, the decisions; JSON-serialisable)."""

    config: TrainConfig
    k: float | None = None
    columns: tuple[int, int] | None = None
    #: C of the composition correction's classifier (see speaker_norm.Composition)
    composition_c: float | None = None
    record: dict[str, Any] = field(default_factory=dict)
    #: softmax temperature fitted on the winner's out-of-fold logits (1.0: none)
    temperature: float = 1.0


def candidate_config(base: TrainConfig, blend: float, c: float) -> TrainConfig:
    """The training config of a candidate: blend weight ``w`` of a logistic regression with
    ``C = c`` into the small-data MLP (``w = 1``: a linear head that is that regression)."""
    if blend >= 1.0:
        return replace(base, head="linear", dropout=0.0, logistic_blend=1.0, logistic_c=c)
    return replace(base, head="mlp+linear", logistic_blend=float(blend), logistic_c=c)


# ------------------------------------------------------------------- selection


def select_head(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    config: TrainConfig | None = None,
    input_dims: Mapping[str, int] | None = None,
    speakers: Iterable[Any] | None = None,
    scripts: Iterable[Any] | None = None,
    speaker_norm: str = "off",
    columns: tuple[int, int] | None = None,
    max_folds: int = MAX_FOLDS,
    seed: int | None = None,
) -> Selection:
    """Choose the head (and the speaker normalisation) for the labelled rows ``x, y``
    (train + val: everything the final model is fitted on). ``columns``: what speaker
    normalisation touches (default: the speech block). Deterministic for a given seed
    (default ``config.seed``)."""
    began = time.perf_counter()
    base = (config or TrainConfig()).resolved()
    seed = base.seed if seed is None else seed
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    input_dims = dict(input_dims) if input_dims else {"speech": x.shape[1]}
    if speaker_norm not in SPEAKER_NORM_MODES:
        raise ValueError(f"speaker_norm must be one of {', '.join(SPEAKER_NORM_MODES)}")
    default = Selection(base)
    record: dict[str, Any] = {"rows": len(y), "seed": seed, "choice": DEFAULT_NAME}
    if base.recipe != "small-data":
        return _done(default, record, began, skipped=f"the {base.recipe} recipe is kept as is")
    keys = np.asarray(
        [speaker_key(s) for s in speakers] if speakers is not None else [None] * len(y),
        dtype=object,
    )
    folds, scheme = cv_folds(
        y, keys if speakers is not None else None, scripts, max_folds=max_folds, seed=seed
    )
    n_folds = int(folds.max()) + 1
    record.update(scheme=scheme, folds=n_folds)
    if n_folds < 2 or len(y) < 2 * n_folds or len(np.unique(y)) < 2:
        return _done(default, record, began, skipped="too few rows or groups to cross-validate")

    plain = plain_folds(x, folds)
    grid = tuple(sorted({*C_GRID, base.logistic_c}))
    lr_plain, plain_models = oof_logistic(plain, y, folds, n_classes, grid)
    best_c = max(grid, key=lambda c: score(y, lr_plain[c], n_classes)["uar"])
    norm_record, fold_data = decide_speaker_norm(
        speaker_norm, x, y, keys, folds, n_classes, input_dims, columns, best_c,
        lr_plain[best_c], plain_models[best_c], seed,
    )  # fmt: skip
    record["speaker_norm"] = norm_record
    k = cols = None
    lr_logits = lr_plain
    if fold_data is not None:
        k, cols = float(norm_record["k"]), tuple(norm_record["columns"])
        # C again, near the best without normalisation (and the default's C)
        near = grid[max(0, grid.index(best_c) - 1) : grid.index(best_c) + 2]
        cs = tuple(sorted({*near, base.logistic_c}))
        init = plain_models[best_c]
        lr_logits = oof_logistic(fold_data, y, folds, n_classes, cs, init=init)[0]
    else:
        fold_data = plain
    mlp = oof_mlp(fold_data, y, folds, n_classes, base, input_dims)
    candidates = _candidates(y, n_classes, mlp, lr_logits, base.logistic_c)
    winner = choose(candidates)
    record["rule"] = f"the best logistic regression unless beaten by > {LR_MARGIN} CV UAR"
    record["candidates"] = candidates
    record["choice"] = winner["name"]
    temperature = cv_temperature(y, _blended(mlp, lr_logits, winner["blend"], winner["c"]))
    record["temperature"] = round(temperature, 4)
    chosen = Selection(
        candidate_config(base, winner["blend"], winner["c"]),
        k,
        cols,
        best_c if k is not None else None,
        temperature=temperature,
    )
    return _done(chosen, record, began)


def cv_temperature(y: np.ndarray, logits: Mapping[Any, np.ndarray]) -> float:
    """The softmax temperature that makes out-of-fold logits (every view, pooled) most
    likely (:func:`~emofuse.head.calibration.fit_temperature`): scikit-learn's
    ``CalibratedClassifierCV(ensemble=False)`` idea, with one parameter. The candidates
    are chosen for UAR, and the winner is often a strongly regularised logistic
    regression whose probabilities are too flat (held-out EmoDB speakers, all clips:
    pooled test ECE 0.16 -> 0.06, ``bench/calibration.py``); the temperature changes
    confidences only, never the label. The labels count as ``1 - 1 / (n + 2)`` sure
    (Laplace's rule of succession over the n rows): when the candidates separate every
    held-out row, the head is sharpened to about that confidence, not to certainty."""
    from emofuse.head.calibration import fit_temperature

    views = list(logits)
    return fit_temperature(
        np.concatenate([logits[v] for v in views]),
        np.tile(y, len(views)),
        smoothing=1.0 / (len(y) + 2),
    )


def choose(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The winner among scored candidates: the best logistic regression (``blend`` 1; ties:
    the first, the smallest C), unless another candidate's CV UAR is higher by more than
    :data:`LR_MARGIN` (then the first of the best)."""
    best_lr = max((c for c in candidates if c["blend"] >= 1.0), key=lambda c: c["uar"])
    best = max(candidates, key=lambda c: c["uar"])
    return best if best["uar"] > best_lr["uar"] + LR_MARGIN else best_lr


def _blended(mlp, lr_logits, blend: float, c: float) -> dict[Any, np.ndarray]:
    """A candidate's out-of-fold logits, per view, from the MLP's and the regression's."""
    return {v: (1 - blend) * mlp[v] + blend * lr_logits[c][v] for v in mlp}


def _candidates(y, n_classes, mlp, lr_logits, default_c) -> list[dict[str, Any]]:
    def scored(name, blend, c):
        logits = _blended(mlp, lr_logits, blend, c)
        return {"name": name, "blend": blend, "c": c, **score(y, logits, n_classes)}

    out = [scored(DEFAULT_NAME, 0.5, default_c)]
    lr = [scored(f"logistic C={c:g}", 1.0, c) for c in sorted(lr_logits)]
    best_c = max(lr, key=lambda r: r["uar"])["c"]
    out.append(scored("mlp", 0.0, default_c))
    for c in dict.fromkeys((default_c, best_c)):
        for w in BLEND_WEIGHTS[1:-1]:
            if (w, c) != (0.5, default_c):
                out.append(scored(f"mlp+logistic w={w:g} C={c:g}", w, c))
    return out + lr


def _done(selection: Selection, record: dict, began: float, skipped: str = "") -> Selection:
    if skipped:
        record["skipped"] = skipped
    record["config"] = selection.config.to_dict()
    record["seconds"] = round(time.perf_counter() - began, 3)
    selection.record = record
    return selection


def fit_selected(
    selection: Selection,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    n_classes: int,
    input_dims: Mapping[str, int] | None = None,
    speakers_train: Iterable[Any] | None = None,
    speakers_val: Iterable[Any] | None = None,
    progress: bool = False,
    log: TrainingLog | None = None,
):
    """Train the winner as :func:`~emofuse.head.train.fit_head` does (refit on train +
    val), on speaker-normalised rows (:meth:`SpeakerNorm.training_rows`) when the
    selection says so. Returns ``(TrainedHead, SpeakerNorm | None)``; the state is fitted
    on train + val and carries the decision in ``info``. ``log`` (default: ``progress``
    alone) says what each fit is (:mod:`emofuse.head.training_log`)."""
    from emofuse.head.train import fit_head

    log = log or TrainingLog(progress=progress)

    norm = None
    if selection.k is not None:
        columns = selection.columns
        who_train = list(speakers_train)
        who_val = list(speakers_val) if x_val is not None else []
        x_all = x_train if x_val is None else np.concatenate([x_train, x_val])
        y_all = y_train if x_val is None else np.concatenate([y_train, y_val])
        scorer = fit_scorer(
            np.asarray(x_all, np.float64), y_all, n_classes, selection.composition_c
        )
        norm = SpeakerNorm.fit(
            x_all, who_train + who_val, k=selection.k, start=columns[0], stop=columns[1],
            composition=fit_composition(x_all, y_all, who_train + who_val, columns, scorer),
        )  # fmt: skip
        norm.info = dict(selection.record.get("speaker_norm", {}))
        # both parts normalised by the statistics of all of a speaker's labelled rows
        rows, index = norm.training_rows(
            x_all, who_train + who_val, few=TRAIN_FEW, seed=selection.config.seed
        )
        in_train = index < len(x_train)
        log = replace(log, views=len(rows) // len(x_all))  # the log counts clips, not copies
        x_train, y_train = rows[in_train], np.asarray(y_all)[index[in_train]]
        if x_val is not None:
            x_val, y_val = rows[~in_train], np.asarray(y_all)[index[~in_train]]
    head = fit_head(
        x_train, y_train, x_val, y_val, n_classes=n_classes, config=selection.config,
        input_dims=input_dims, log=log,
    )  # fmt: skip
    calibrated_on_val = selection.config.calibrate and x_val is not None and len(x_val) > 0
    if selection.temperature != 1.0 and not calibrated_on_val:
        head.temperature = selection.temperature
        log.phase(
            f"calibration: temperature {selection.temperature:.3g} fitted on the CV's "
            "out-of-fold logits, so that confidences match accuracy"
        )
    return head, norm
