"""Which clips of an unlabelled pool to label next: the four strategies of `emofuse
suggest`, over the model's class probabilities and the clips' standardised vectors.

Pure numpy, no files: a strategy takes the pool's probabilities (one row per clip not yet
labelled), and for those that spread their picks, the vectors of some of its rows and of
the clips already labelled; it returns pool rows in the order to label them. The same
inputs and seed always give the same order.

- ``random``: a seeded shuffle.
- ``uncertainty``: the smallest margin between the two most probable emotions first.
- ``diverse``: k-center greedy on the standardised vectors (the ``diverse`` sampling
  order's :func:`emofuse.sampling.k_center_order`), starting far from the clips already
  labelled.
- ``hybrid``: the predicted emotions take turns (the one with the fewest labelled clips
  first), each giving one of the most uncertain of the clips predicted as it
  (:data:`HYBRID_UNCERTAIN_SHARE`), preferring speakers with few labelled clips.
  ``bench/active_learning.py`` chose this design: spreading the picks by k-center in the
  offline vectors' space (a speaker embedding is most of it) did worse than random there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emofuse.sampling import k_center_order

STRATEGIES = ("hybrid", "uncertainty", "diverse", "random")
#: The strategy `emofuse suggest` uses unless told otherwise: the best in the bench.
DEFAULT_STRATEGY = "hybrid"
#: hybrid: the share of each predicted emotion's clips, most uncertain first, that its
#: picks come from (bench/active_learning.py).
HYBRID_UNCERTAIN_SHARE = 0.5
#: hybrid: how much a speaker with few labels counts against a small margin. A clip of the
#: speaker with the fewest labels wins over the least certain clip when it is at most this
#: share of the uncertain part further down (bench/active_learning.py: spreading harder
#: over speakers helped the demo corpus and cost EmoDB).
HYBRID_SPEAKER_WEIGHT = 0.3
#: The most pool rows whose vectors a spreading strategy reads (memory stays bounded
#: whatever the pool's size): ``diverse`` spreads over a seeded random sample of this many.
MAX_VECTOR_ROWS = 20_000


class StrategyError(ValueError):
    """A strategy asked for that does not exist, or inputs it cannot rank."""


@dataclass(frozen=True)
class TopTwo:
    """Per row: the two most probable classes, their probabilities and the margin between
    them (small margin: the model hesitates between two emotions)."""

    first: np.ndarray
    second: np.ndarray
    p_first: np.ndarray
    p_second: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        return self.p_first - self.p_second


def top_two(proba: np.ndarray) -> TopTwo:
    """The two most probable classes of each row of ``proba`` (n, classes); with a single
    class the second is the first with probability 0. Ties go to the lower class index."""
    proba = _check_proba(proba)
    n = len(proba)
    if proba.shape[1] == 1:
        zero = np.zeros(n, dtype=int)
        return TopTwo(zero, zero, proba[:, 0], np.zeros(n))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :2]
    rows = np.arange(n)
    return TopTwo(order[:, 0], order[:, 1], proba[rows, order[:, 0]], proba[rows, order[:, 1]])


def check_strategy(name: str) -> str:
    """``name`` if it is one of :data:`STRATEGIES`, else a :class:`StrategyError`."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return name


def vector_rows(strategy: str, proba: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The pool rows whose vectors :func:`rank` reads for ``strategy`` (sorted; none for
    ``random``, ``uncertainty`` and ``hybrid``), at most :data:`MAX_VECTOR_ROWS`."""
    n = len(_check_proba(proba))
    if check_strategy(strategy) != "diverse":
        return np.zeros(0, dtype=int)
    if n <= MAX_VECTOR_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_VECTOR_ROWS, replace=False))


def rank(
    strategy: str,
    n: int,
    proba: np.ndarray,
    *,
    vectors: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    labelled_vectors: np.ndarray | None = None,
    labelled_classes: np.ndarray | None = None,
    speakers: np.ndarray | None = None,
    labelled_speakers: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Up to ``n`` pool rows (positions in ``proba``), in the order to label them.

    ``vectors`` (standardised, one per entry of ``rows``, the positions
    :func:`vector_rows` asked for) and ``labelled_vectors`` (the clips already labelled,
    same columns) are read by ``diverse``; ``labelled_classes`` (class indices of the
    labelled clips whose label is known, -1 for unknown), ``speakers`` (one name per pool
    row) and ``labelled_speakers`` by ``hybrid``, so that emotions and speakers with few
    labels get their picks first."""
    proba = _check_proba(proba)
    check_strategy(strategy)
    if n < 0:
        raise StrategyError(f"the number of clips to suggest must be >= 0, not {n}")
    n = min(n, len(proba))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(proba))  # the seeded order every tie falls back on
    if n == 0:
        return np.zeros(0, dtype=int)
    if strategy == "random":
        return shuffled[:n]
    if strategy == "uncertainty":
        return most_uncertain_first(proba, shuffled)[:n]
    if strategy == "diverse":
        return diverse_order(n, vectors, rows, labelled_vectors, shuffled)
    return hybrid_order(n, proba, shuffled, labelled_classes, speakers, labelled_speakers)


def most_uncertain_first(proba: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted by margin, smallest first (ties keep the order of ``rows``)."""
    return rows[np.argsort(top_two(proba[rows]).margin, kind="stable")]


def diverse_order(
    n: int,
    vectors: np.ndarray | None,
    rows: np.ndarray | None,
    labelled_vectors: np.ndarray | None,
    shuffled: np.ndarray,
) -> np.ndarray:
    """k-center greedy over the rows that have vectors, in the seeded order of
    ``shuffled`` (which decides the start when nothing is labelled, and the ties)."""
    if vectors is None or rows is None:
        raise StrategyError("diverse needs the vectors of the rows vector_rows() names")
    vectors, rows = np.asarray(vectors, dtype=np.float64), np.asarray(rows, dtype=int)
    if vectors.ndim != 2 or len(vectors) != len(rows):
        raise StrategyError(f"{len(rows)} rows but vectors of shape {vectors.shape}")
    where = {int(r): i for i, r in enumerate(rows)}
    order = np.asarray([where[int(r)] for r in shuffled if int(r) in where], dtype=int)
    before = None
    if labelled_vectors is not None and len(labelled_vectors):
        before = np.asarray(labelled_vectors, dtype=np.float64)
        if before.ndim != 2 or before.shape[1] != vectors.shape[1]:
            raise StrategyError(
                f"labelled vectors of shape {before.shape} for pool vectors of shape "
                f"{vectors.shape}"
            )
    picked = k_center_order(vectors[order], n, picked_before=before)
    return rows[order[picked]]


def hybrid_order(
    n: int,
    proba: np.ndarray,
    shuffled: np.ndarray,
    labelled_classes: np.ndarray | None = None,
    speakers: np.ndarray | None = None,
    labelled_speakers: np.ndarray | None = None,
) -> np.ndarray:
    """One pick at a time: the predicted emotion with the fewest clips so far (labelled
    plus picked) takes its turn and gives a clip from its most uncertain
    :data:`HYBRID_UNCERTAIN_SHARE`: the least certain one, unless a clip a little further
    down comes from a speaker with fewer clips so far (:data:`HYBRID_SPEAKER_WEIGHT`). So
    the picks interleave the emotions, and a user who labels only the first few still
    labels each of them."""
    tops = top_two(proba)
    k = proba.shape[1]
    have = np.zeros(k, dtype=np.int64)
    if labelled_classes is not None and len(labelled_classes):
        known = np.asarray(labelled_classes, dtype=int)
        have += np.bincount(known[(known >= 0) & (known < k)], minlength=k)
    codes, voices = _speaker_codes(speakers, labelled_speakers, len(proba))
    queues, shares = [], np.zeros(k, dtype=int)
    for c in range(k):
        queues.append(most_uncertain_first(proba, shuffled[tops.first[shuffled] == c]))
        shares[c] = int(np.ceil(HYBRID_UNCERTAIN_SHARE * len(queues[c])))
    out: list[int] = []
    while len(out) < n:
        open_classes = [c for c in range(k) if len(queues[c])]
        if not open_classes:
            break
        turn = min(open_classes, key=lambda c: (have[c], c))
        queue = queues[turn]
        window = queue[: max(shares[turn], 1)]  # margin-sorted: the least certain first
        best = int(np.argmin(_hybrid_scores(voices[codes[window]])))
        pick = int(window[best])
        out.append(pick)
        queues[turn] = np.delete(queue, best)
        shares[turn] = max(shares[turn] - 1, 0)
        have[turn] += 1
        voices[codes[pick]] += 1
    return np.asarray(out, dtype=int)


def _hybrid_scores(speaker_clips: np.ndarray) -> np.ndarray:
    """Per clip of a margin-sorted window: its place in the window (0 to 1) plus
    :data:`HYBRID_SPEAKER_WEIGHT` times its speaker's clips so far, scaled over the window
    (0: the speaker with the fewest, 1: the most); the lowest is picked."""
    place = np.arange(len(speaker_clips)) / len(speaker_clips)
    spread = float(speaker_clips.max() - speaker_clips.min()) if len(speaker_clips) else 0.0
    if spread == 0:
        return place
    return place + HYBRID_SPEAKER_WEIGHT * (speaker_clips - speaker_clips.min()) / spread


def _speaker_codes(
    speakers: np.ndarray | None, labelled_speakers: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """A speaker code per pool row, and per code the clips labelled so far (one shared
    code for every row when the pool names no speakers; a blank name is one speaker)."""
    if speakers is None:
        return np.zeros(n, dtype=int), np.zeros(1, dtype=np.int64)
    names = np.asarray(["" if s is None else str(s) for s in speakers], dtype=object)
    if len(names) != n:
        raise StrategyError(f"{n} rows but {len(names)} speaker names")
    known = (
        []
        if labelled_speakers is None
        else ["" if s is None else str(s) for s in labelled_speakers]
    )
    vocabulary = {name: i for i, name in enumerate(dict.fromkeys([*names.tolist(), *known]))}
    codes = np.asarray([vocabulary[name] for name in names], dtype=int)
    voices = np.zeros(len(vocabulary), dtype=np.int64)
    for name in known:
        voices[vocabulary[name]] += 1
    return codes, voices


def _check_proba(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 1:
        raise StrategyError(f"probabilities must be a matrix (clips, classes), not {proba.shape}")
    if not np.isfinite(proba).all():
        raise StrategyError("probabilities hold NaN/inf values")
    return proba
