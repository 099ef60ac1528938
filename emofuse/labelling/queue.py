"""Which clip an annotator labels next, and how far the labelling has come.

Every annotator walks the same order (the pool's, or the bundle's ranking) on their own,
so a clip labelled by two people shows whether they agree. The queue is rebuilt from
answers.csv on start (:meth:`LabelQueue.replay`), so a restarted page resumes where each
annotator left off; skips live in memory only (a skipped clip comes back after a restart,
and after the rest of the order). Plain Python, no locking: the caller serialises calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from emofuse.corpus.answers import RETRACT, Answer


@dataclass
class _Walk:
    """One annotator's way through the order."""

    #: index of the first clip in the order not yet answered or skipped by them
    position: int = 0
    #: ids they skipped, oldest first: served again after the rest of the order
    skipped: dict[str, None] = field(default_factory=dict)
    #: ids whose answer they undid, served before anything else (latest first)
    redo: list[str] = field(default_factory=list)
    #: the ids of their standing answers, in the order given (what undo withdraws)
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """How far the labelling has come, for one annotator and for everyone."""

    pool_size: int
    #: clips this annotator has a standing answer on
    answered_by_me: int
    #: clips anyone has a standing answer on
    answered_by_anyone: int
    #: label -> clips this annotator gave that label
    mine: dict[str, int]
    #: label -> clips whose annotators' majority is that label (ties counted in ``ties``)
    everyone: dict[str, int]
    ties: int
    #: clips answered by two or more annotators, and how many of them all agree on
    shared: int
    agreeing: int


class LabelQueue:
    """The order of the clips and every annotator's standing answers on them."""

    def __init__(self, order: Sequence[str], labels: Sequence[str]):
        self.order = list(order)
        self.labels = list(labels)
        self.index = {ident: i for i, ident in enumerate(self.order)}
        if len(self.index) != len(self.order):
            raise ValueError("the clip order names an id twice")
        #: id -> {annotator: their latest standing label}
        self.standing: dict[str, dict[str, str]] = {}
        #: (id, annotator) -> their labels on the clip, latest last (retractions pop)
        self._stacks: dict[tuple[str, str], list[str]] = {}
        self._walks: dict[str, _Walk] = {}

    def replay(self, answers: Iterable[Answer]) -> int:
        """Take in answers read from answers.csv, in file order. Answers on ids not in the
        order (another pool's, a hand edit) are left out; returns how many."""
        foreign = 0
        for answer in answers:
            if answer.id not in self.index:
                foreign += 1
            elif answer.action == RETRACT:
                self.retract(answer.annotator, answer.id)
            else:
                self.record(answer.annotator, answer.id, answer.label)
        return foreign

    # ---------------------------------------------------------------- changes

    def record(self, annotator: str, ident: str, label: str) -> None:
        self._stacks.setdefault((ident, annotator), []).append(label)
        self.standing.setdefault(ident, {})[annotator] = label
        walk = self._walk(annotator)
        walk.history.append(ident)
        walk.skipped.pop(ident, None)

    def retract(self, annotator: str, ident: str) -> None:
        """Withdraw ``annotator``'s latest standing answer on ``ident`` (as
        :func:`emofuse.corpus.answers.standing_answers` reads a ``retract`` line)."""
        stack = self._stacks.get((ident, annotator))
        if not stack:
            return
        stack.pop()
        walk = self._walk(annotator)
        history = walk.history
        for i in range(len(history) - 1, -1, -1):
            if history[i] == ident:
                del history[i]
                break
        if stack:
            self.standing[ident][annotator] = stack[-1]
            return
        del self._stacks[(ident, annotator)]
        del self.standing[ident][annotator]
        if not self.standing[ident]:
            del self.standing[ident]
        walk.position = min(walk.position, self.index[ident])

    def skip(self, annotator: str, ident: str) -> None:
        """Put ``ident`` behind the rest of the order for ``annotator``."""
        walk = self._walk(annotator)
        if ident in walk.redo:
            walk.redo.remove(ident)
        walk.skipped.pop(ident, None)
        walk.skipped[ident] = None

    def last_answered(self, annotator: str) -> str | None:
        """The id of ``annotator``'s latest standing answer (what an undo withdraws)."""
        history = self._walk(annotator).history
        return history[-1] if history else None

    def undo(self, annotator: str) -> str | None:
        """Withdraw ``annotator``'s latest standing answer and serve that clip next;
        the id, or None when there is nothing to undo. The caller writes the retraction."""
        ident = self.last_answered(annotator)
        if ident is None:
            return None
        self.retract(annotator, ident)
        self._walk(annotator).redo.append(ident)
        return ident

    # ---------------------------------------------------------------- reading

    def answered(self, annotator: str, ident: str) -> bool:
        return annotator in self.standing.get(ident, {})

    def next_for(self, annotator: str) -> str | None:
        """The clip ``annotator`` labels next (the same until they answer or skip it), or
        None when they have answered every clip."""
        walk = self._walk(annotator)
        while walk.redo:
            if not self.answered(annotator, walk.redo[-1]):
                return walk.redo[-1]
            walk.redo.pop()
        while walk.position < len(self.order):
            ident = self.order[walk.position]
            if not self.answered(annotator, ident) and ident not in walk.skipped:
                return ident
            walk.position += 1
        for ident in list(walk.skipped):
            if not self.answered(annotator, ident):
                return ident
            del walk.skipped[ident]
        return None

    def progress(self, annotator: str) -> Progress:
        mine: Counter[str] = Counter()
        everyone: Counter[str] = Counter()
        ties = shared = agreeing = 0
        for by_annotator in self.standing.values():
            if annotator in by_annotator:
                mine[by_annotator[annotator]] += 1
            counts = Counter(by_annotator.values()).most_common()
            if len(counts) > 1 and counts[0][1] == counts[1][1]:
                ties += 1
            else:
                everyone[counts[0][0]] += 1
            if len(by_annotator) > 1:
                shared += 1
                agreeing += len(counts) == 1
        return Progress(
            pool_size=len(self.order),
            answered_by_me=sum(mine.values()),
            answered_by_anyone=len(self.standing),
            mine={label: mine.get(label, 0) for label in self.labels},
            everyone={label: everyone.get(label, 0) for label in self.labels},
            ties=ties,
            shared=shared,
            agreeing=agreeing,
        )

    def _walk(self, annotator: str) -> _Walk:
        return self._walks.setdefault(annotator, _Walk())
