"""Choosing speaker normalisation by cross-validation: whether to switch it on and with
which ``k``, simulating held-out speakers heard the ways prediction will meet them.

The training rows of a fold are normalised three times (:meth:`SpeakerNorm.training_rows`:
by each speaker's own statistics, and twice by those of 3 random clips, :data:`TRAIN_FEW`;
two noisy copies rather than one lifted every view on EmoDB, all clips +0.048 -> +0.061,
``bench/speaker_adapt.py``), with the
composition correction (:class:`~emofuse.head.speaker_norm.Composition`) fitted on the
fold. Each held-out speaker is scored with statistics from 3, 5 or 10 random clips, from
all of them, or from an emotion-skewed subset (:data:`SKEW` of the clips from one
emotion), :data:`DRAWS` draws each (:data:`VIEWS`). ``k`` from :data:`K_GRID` is chosen
with the logistic regression at the best ``C`` without normalisation: the best mean UAR
over the views among the ``k`` whose worst view loses at most :data:`MAX_LOSS` against no
normalisation. ``auto`` switches it on only with at least :data:`MIN_SPEAKERS` named
speakers and a mean gain above :data:`MIN_GAIN`; ``on`` whenever there are 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emofuse.head.cv import Fold, View, oof_logistic, score
from emofuse.head.speaker_norm import Composition, SpeakerNorm

K_GRID = (10.0, 30.0, 100.0)
#: how held-out speakers are heard in CV: statistics from that many random clips, from
#: all ("all"), or from an emotion-skewed subset ("skew")
VIEWS = ("3", "5", "10", "all", "skew")
#: share of a skewed subset's clips from one emotion
SKEW = 0.7
#: random subsets per held-out speaker and view
DRAWS = 3
#: clips of the noisy copies of each training row (SpeakerNorm.training_rows)
TRAIN_FEW = (3, 3)
MIN_SPEAKERS = 4
MIN_GAIN = 0.005
MAX_LOSS = 0.01
SPEAKER_NORM_MODES = ("off", "auto", "on")


def decide_speaker_norm(
    mode, x, y, keys, folds, n_classes, input_dims, columns, c, off_logits, scorers, seed
):
    """The speaker-norm decision and its evidence; with it on, the folds as the head
    candidates will see them."""
    named = sorted({k for k in keys if k is not None})
    out: dict[str, Any] = {"mode": mode, "speakers": len(named), "decision": "off"}
    if mode == "off":
        out["reason"] = "off by request"
        return out, None
    if columns is None:
        if "speech" not in input_dims:
            out["reason"] = "a text-only model: nothing depends on the voice"
            return out, None
        columns = (0, int(input_dims["speech"]))
    out["columns"] = list(columns)
    need = MIN_SPEAKERS if mode == "auto" else 2
    if len(named) < need:
        out["reason"] = f"{len(named)} named speakers in the training rows; needs {need}"
        return out, None
    off = score(y, off_logits, n_classes)
    out.update(c=c, scores={"off": off})
    picks = _subset_picks(y, keys, folds, seed)
    gains = {}
    for k in K_GRID:
        fold_data = _norm_folds(x, y, keys, folds, k, columns, picks, seed, scorers)
        logits = oof_logistic(fold_data, y, folds, n_classes, (c,), init=scorers)[0][c]
        scores = score(y, logits, n_classes)
        out["scores"][f"k={k:g}"] = scores
        gains[k] = (scores["uar"] - off["uar"], min(scores["by_view"].values()) - off["uar"])
    safe = [k for k in K_GRID if gains[k][1] >= -MAX_LOSS]
    best_k = max(safe or K_GRID, key=lambda k: gains[k][0])  # ties: the smaller k
    gain, worst = gains[best_k]
    out.update(k=best_k, gain=round(gain, 4), worst_view_gain=round(worst, 4))
    if mode == "on" or (safe and gain > MIN_GAIN):
        out["decision"] = "on"
        out["reason"] = f"k={best_k:g}: CV UAR {gain:+.3f} over off (worst view {worst:+.3f})"
        return out, _norm_folds(x, y, keys, folds, best_k, columns, picks, seed, scorers)
    out["reason"] = (
        f"best k={best_k:g}: CV UAR {gain:+.3f} over off, worst view {worst:+.3f} "
        f"(needs > +{MIN_GAIN} with no view below -{MAX_LOSS})"
    )
    return out, None


def _subset_picks(y, speakers, folds, seed) -> list[dict[View, dict[str, np.ndarray]]]:
    """Per fold, per view, per held-out speaker: the rows its statistics come from
    (the same draws for every ``k``)."""
    rng = np.random.default_rng(seed + 1)
    picks = []
    for f in range(int(folds.max()) + 1):
        test = np.flatnonzero(folds == f)
        members = {
            key: test[speakers[test] == key]
            for key in dict.fromkeys(speakers[test].tolist())
            if key is not None
        }
        by_view: dict[View, dict[str, np.ndarray]] = {}
        for view in VIEWS:
            for draw in range(1 if view == "all" else DRAWS):
                by_view[(view, draw)] = {
                    key: _stats_rows(rows, y, view, rng) for key, rows in members.items()
                }
        picks.append(by_view)
    return picks


def _stats_rows(rows: np.ndarray, y: np.ndarray, view: str, rng) -> np.ndarray:
    if view == "all":
        return rows
    if view == "skew":
        main_label = rng.choice(np.unique(y[rows]))
        main, others = rows[y[rows] == main_label], rows[y[rows] != main_label]
        extra = min(len(others), int(round(len(main) * (1 - SKEW) / SKEW)))
        return np.sort(np.concatenate([main, rng.choice(others, extra, replace=False)]))
    n = int(view)
    return rows if n >= len(rows) else np.sort(rng.choice(rows, n, replace=False))


def _norm_folds(x, y, speakers, folds, k, columns, picks, seed, scorers) -> list[Fold]:
    start, stop = columns
    out = []
    for f, by_view in enumerate(picks):
        tr, te = np.flatnonzero(folds != f), folds == f
        composition = fit_composition(x[tr], y[tr], speakers[tr], columns, scorers[f])
        norm = SpeakerNorm.fit(
            x[tr], speakers[tr], k=k, start=start, stop=stop, composition=composition
        )
        train, index = norm.training_rows(x[tr], speakers[tr], few=TRAIN_FEW, seed=seed + f)
        tests = {
            view: norm.transform_groups(
                x[te], speakers[te], {s: norm.moments(x[rows]) for s, rows in stats.items()}
            )
            for view, stats in by_view.items()
        }
        out.append(Fold(train, tr[index], tests))
    return out


def fit_composition(x, y, speakers, columns, scorer) -> Composition:
    """The composition correction of a speaker norm over ``x`` (labelled rows), with a
    fitted standardised linear classifier ``scorer = (weight, bias, mean, std)``."""
    weight, bias, mean, std = scorer
    offsets = Composition.class_offsets(x[:, columns[0] : columns[1]], y, speakers, len(bias))
    return Composition(weight, bias, mean, std, offsets)


def fit_scorer(x, y, n_classes, c):
    """A class-balanced logistic regression on standardised rows: (weight, bias, mean, std)."""
    from emofuse.head.logistic import fit_logistic

    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std < 1e-5, 1.0, std)
    weight, bias = fit_logistic((x - mean) / std, y, n_classes, c=c, balanced=True)
    return weight, bias, mean, std
