"""The order of the clips with ``--bundle``, and the model's guess on each: the ranking of
`emofuse suggest` (:func:`emofuse.active.suggest.suggest`, its default strategy) over
every unlabelled clip of the pool, so the page offers first what `suggest` would, with
the same guesses (speaker statistics from all the pool's clips of each speaker).

The vectors come from a feature store: ``--store`` (kept, shared with `suggest` and
`extract`), else a temporary folder removed once the guesses are made, since the label
server leaves nothing but answers.csv behind."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from emofuse.active.suggest import suggest
from emofuse.corpus.pool import Pool
from emofuse.labelling.desk import Guess


def bundle_order(
    bundle: Any, pool: Pool, *, store: str | Path | None = None, progress: bool = False
) -> tuple[list[str], dict[str, Guess]]:
    """The unlabelled clips of ``pool`` in labelling order, and ``bundle``'s guess on each.

    First the clips `suggest` ranks, in its order and with its guesses; then, in the
    pool's order and without a guess, the unlabelled clips it leaves out (those the model
    cannot read, e.g. no audio for a model that hears, and those it was trained on).
    ``store``: the feature store folder (None: a temporary one); ``progress``: a bar while
    the vectors are computed."""
    unlabelled = pool.table.loc[pool.table["label"] == "", "id"].astype(str).tolist()
    if not unlabelled:
        return [], {}
    place = tempfile.TemporaryDirectory(prefix="emofuse-label-") if store is None else None
    with place or nullcontext():
        folder = place.name if place is not None else store
        picked = suggest(bundle, pool, len(pool.table), store=folder, progress=progress).table
    id_column = pool.columns.get("id", "id")
    ids = picked[id_column if id_column in picked.columns else "id"].astype(str).tolist()
    guesses = {
        ident: Guess(
            label=str(row.predicted),
            probability=float(row.p_predicted),
            second=str(row.second),
            second_probability=float(row.p_second),
        )
        for ident, row in zip(ids, picked.itertuples(index=False), strict=True)
    }
    ranked = set(ids)
    return ids + [i for i in unlabelled if i not in ranked], guesses
