"""Per-item failure isolation: one bad input of a batch fails alone.

A batch is scored (or encoded) in one call because that is fast; but one unreadable clip
or one text the model cannot use must not cost the other items their results.
:func:`isolate_failures` tries the whole batch first and, only when it raises one of the
given errors, tries each item alone, so every item ends with its own result or its own
error. The prediction engine (:meth:`emofuse.predict.PredictionEngine.predict_each`), the
service (:meth:`emofuse.serve.handlers.PredictionService.predict_items`) and the feature
extraction (:mod:`emofuse.features.compute`) all isolate this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Attempt(Generic[Result]):
    """One item's result, or the error that kept it from one (then ``value`` is None)."""

    value: Result | None
    error: Exception | None = None


def isolate_failures(
    run: Callable[[Sequence[Item]], Sequence[Result]],
    items: Sequence[Item],
    errors: type[Exception] | tuple[type[Exception], ...],
    *,
    fatal: tuple[type[Exception], ...] = (),
) -> list[Attempt[Result]]:
    """One :class:`Attempt` per item of ``items``, in order.

    ``run`` maps a batch to one result per item. The whole batch is tried first; if it
    raises one of ``errors``, each item is run alone and gets its own result or error (a
    batch of one item takes the batch's error: trying it again would fail the same way).
    ``fatal`` errors (a subclass of ``errors`` that stops the whole run, e.g. an encoder
    that is broken for every input) and any error not in ``errors`` propagate.
    """
    if not items:
        return []
    try:
        results = run(items)
    except fatal:
        raise
    except errors as err:
        if len(items) == 1:
            return [Attempt(None, err)]
        return [_alone(run, item, errors, fatal) for item in items]
    return [Attempt(result) for result in _one_each(results, len(items))]


def _alone(
    run: Callable[[Sequence[Item]], Sequence[Result]],
    item: Item,
    errors: type[Exception] | tuple[type[Exception], ...],
    fatal: tuple[type[Exception], ...],
) -> Attempt[Result]:
    try:
        results = run([item])
    except fatal:
        raise
    except errors as err:
        return Attempt(None, err)
    return Attempt(_one_each(results, 1)[0])


def _one_each(results: Sequence[Result], n: int) -> Sequence[Result]:
    if len(results) != n:  # a bug in ``run``, not a bad input
        raise RuntimeError(f"{len(results)} results for a batch of {n} items")
    return results
