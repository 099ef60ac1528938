"""The strategies of `emofuse suggest` on synthetic probabilities and vectors: what each
ranks first, that the hybrid shares its picks over predicted emotions and speakers, and
that a seed fixes the order."""

from __future__ import annotations

import numpy as np
import pytest

from emofuse.active.strategies import (
    HYBRID_UNCERTAIN_SHARE,
    STRATEGIES,
    StrategyError,
    rank,
    top_two,
    vector_rows,
)
from emofuse.sampling import k_center_order


def _proba(rng: np.random.Generator, n: int, k: int, sharpness: float = 3.0) -> np.ndarray:
    logits = rng.normal(scale=sharpness, size=(n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _rank(strategy: str, n: int, proba: np.ndarray, vectors=None, **kw) -> np.ndarray:
    rows = vector_rows(strategy, proba, seed=kw.get("seed", 0))
    if strategy == "diverse":
        kw.update(vectors=vectors[rows], rows=rows)
    return rank(strategy, n, proba, **kw)


def test_top_two_and_margin():
    proba = np.array([[0.1, 0.6, 0.3], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
    tops = top_two(proba)
    assert tops.first.tolist() == [1, 0, 2]
    assert tops.second.tolist() == [2, 1, 0]  # a tie goes to the lower index
    np.testing.assert_allclose(tops.margin, [0.3, 0.0, 0.4])


def test_uncertainty_ranks_the_smallest_margins_first():
    proba = _proba(np.random.default_rng(0), 200, 5)
    picked = rank("uncertainty", 10, proba, seed=3)
    margins = top_two(proba).margin
    assert sorted(margins[picked].tolist()) == sorted(np.sort(margins)[:10].tolist())
    assert np.all(np.diff(margins[picked]) >= 0)  # in order, the least sure first


def test_diverse_spreads_over_clusters_and_starts_far_from_the_labelled():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [20, 0], [0, 20], [20, 20]], dtype=float)
    cluster = np.repeat(np.arange(4), 50)
    vectors = centres[cluster] + rng.normal(scale=0.5, size=(200, 2))
    proba = _proba(rng, 200, 3)
    # clips of the first cluster are labelled already: the next three come from the others
    labelled = centres[[0, 0]] + rng.normal(scale=0.5, size=(2, 2))
    picked = _rank("diverse", 3, proba, vectors, labelled_vectors=labelled)
    assert sorted(cluster[picked].tolist()) == [1, 2, 3]
    # nothing labelled: four picks cover the four clusters
    assert sorted(cluster[_rank("diverse", 4, proba, vectors)].tolist()) == [0, 1, 2, 3]


def test_k_center_counts_points_picked_before():
    points = np.array([[0.0], [1.0], [5.0], [9.0], [10.0]])
    assert k_center_order(points, 2).tolist() == [0, 4]  # unchanged without picked_before
    assert k_center_order(points, 2, picked_before=np.array([[10.0]])).tolist() == [0, 2]
    assert k_center_order(points, 1, picked_before=np.array([[0.0], [10.0]])).tolist() == [2]


def test_hybrid_shares_picks_over_predicted_emotions():
    rng = np.random.default_rng(2)
    # 90 % of the pool looks like emotion 0: uncertainty alone would take only those
    predicted = np.r_[np.zeros(270, int), np.ones(15, int), np.full(15, 2)]
    proba = np.full((300, 3), 0.05)
    proba[np.arange(300), predicted] = rng.uniform(0.4, 0.9, 300)
    proba /= proba.sum(axis=1, keepdims=True)
    picked = rank("hybrid", 9, proba, seed=0)
    assert np.bincount(predicted[picked], minlength=3).tolist() == [3, 3, 3]
    # emotions that already have labels wait: the first picks go to those that have none
    picked = rank("hybrid", 4, proba, labelled_classes=np.array([0, 0, 0, 1, 1]), seed=0)
    assert predicted[picked].tolist() == [2, 2, 1, 2]


def test_hybrid_takes_from_the_uncertain_part_of_each_emotion():
    rng = np.random.default_rng(3)
    proba = _proba(rng, 400, 4, sharpness=2.0)
    tops = top_two(proba)
    picked = rank("hybrid", 12, proba, seed=5)
    for row in picked:
        mine = tops.margin[tops.first == tops.first[row]]
        cut = np.sort(mine)[int(np.ceil(HYBRID_UNCERTAIN_SHARE * len(mine))) - 1]
        assert tops.margin[row] <= cut


def test_hybrid_spreads_over_speakers_with_the_fewest_labels():
    rng = np.random.default_rng(4)
    proba = _proba(rng, 120, 2)
    speakers = np.array(["a", "b", "c"] * 40, dtype=object)
    picked = rank(
        "hybrid", 4, proba, speakers=speakers,
        labelled_speakers=np.array(["a", "a", "b"], dtype=object), seed=0,
    )  # fmt: skip
    # c has none labelled, b one, a two: c first, then b and c until they catch up with a
    assert speakers[picked[0]] == "c"
    assert set(speakers[picked[:3]]) == {"b", "c"}
    # without speakers each emotion's turn gives its least certain clip, whoever speaks
    plain = rank("hybrid", 2, proba, seed=0)
    tops = top_two(proba)
    for row in plain:
        mine = np.flatnonzero(tops.first == tops.first[row])
        assert row == mine[np.argmin(tops.margin[mine])]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_deterministic_for_a_seed_and_never_repeats(strategy):
    rng = np.random.default_rng(5)
    proba = _proba(rng, 150, 4)
    vectors = rng.normal(size=(150, 6))
    speakers = np.array([f"s{i % 5}" for i in range(150)], dtype=object)
    kw = {"speakers": speakers} if strategy == "hybrid" else {}
    first = _rank(strategy, 20, proba, vectors, seed=7, **kw)
    again = _rank(strategy, 20, proba, vectors, seed=7, **kw)
    assert first.tolist() == again.tolist()
    assert len(set(first.tolist())) == 20
    # asking for more than the pool holds gives every row once
    everything = _rank(strategy, 500, proba, vectors, seed=7, **kw)
    assert sorted(everything.tolist()) == list(range(150))


def test_random_order_changes_with_the_seed():
    proba = _proba(np.random.default_rng(6), 100, 3)
    assert rank("random", 10, proba, seed=1).tolist() != rank("random", 10, proba, seed=2).tolist()


def test_unknown_strategy_and_bad_inputs_are_refused():
    proba = _proba(np.random.default_rng(7), 10, 3)
    with pytest.raises(StrategyError, match="unknown strategy 'smart'.*hybrid"):
        rank("smart", 3, proba)
    with pytest.raises(StrategyError, match="NaN"):
        rank("uncertainty", 3, np.full((4, 3), np.nan))
    with pytest.raises(StrategyError, match="diverse needs the vectors"):
        rank("diverse", 3, proba)
    assert rank("hybrid", 0, proba).tolist() == []
    assert rank("uncertainty", 3, np.zeros((0, 3))).tolist() == []
