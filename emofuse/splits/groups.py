"""Rows that must stay on one side of a split, and dealing such groups out to parts.

A group is a speaker (:func:`speaker_codes`) or a sentence (:func:`script_components`:
rows linked by a script id or a normalised text). :func:`assign_groups` deals whole
groups out so that each part's label counts approach its share.

Rows with the same audio (:func:`audio_keys`: the ``audio_group`` column `prepare` adds
for identical files, else the same path) are one clip: every strategy keeps them in one
part (:func:`with_duplicate_audio` merges a strategy's groups through them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emofuse.splits.parts import SplitError, needed_parts
from emofuse.text import normalize_texts

#: Grouped assignment refines its first guess by moving single groups between parts;
#: past this many groups the first guess is already balanced and the loop would be slow.
_LOCAL_SEARCH_MAX_GROUPS = 20_000
_LOCAL_SEARCH_PASSES = 6


def speaker_codes(table: pd.DataFrame, column: str) -> np.ndarray:
    """Group ids of the people in ``column``; every row must name one."""
    if column not in table.columns:
        raise SplitError(f"the table has no {column!r} column; use stratified or script")
    values = table[column].fillna("").astype(str).str.strip()
    empty = int((values == "").sum())
    if empty == len(values):
        raise SplitError(f"no {column} column values; use stratified or script")
    if empty:
        raise SplitError(
            f"{empty} of {len(values)} rows have no {column}, so they cannot be kept apart "
            "by person; fill them in, drop them, or use stratified or script"
        )
    return pd.factorize(values.to_numpy())[0]


def audio_keys(table: pd.DataFrame) -> pd.Series:
    """The audio a row holds, as a key rows with the same audio share: its ``audio_group``
    (identical files, found by `prepare`) where set, else its ``audio`` path; ``''`` for a
    row without audio (never grouped)."""
    if "audio" not in table.columns:
        return pd.Series("", index=table.index, dtype=object)
    keys = table["audio"].fillna("").astype(str).str.strip()
    if "audio_group" in table.columns:
        group = table["audio_group"].fillna("").astype(str).str.strip()
        keys = group.where(group != "", keys)
    return keys


def duplicate_audio_groups(table: pd.DataFrame) -> np.ndarray | None:
    """Per row, the id of its duplicate-audio group (-1 for audio no other row has), or
    None when no two rows share their audio."""
    keys = audio_keys(table)
    shared = (keys != "") & keys.duplicated(keep=False)
    if not shared.any():
        return None
    codes = np.full(len(table), -1)
    codes[shared.to_numpy()] = pd.factorize(keys[shared].to_numpy())[0]
    return codes


def with_duplicate_audio(codes: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """Group ids ``codes`` merged through duplicate audio, so rows with the same audio
    share a group; ``codes`` itself when no two rows share their audio."""
    if duplicate_audio_groups(table) is None:
        return codes
    return connected_groups([pd.Series(np.asarray(codes).astype(str)), audio_keys(table)])


def script_components(table: pd.DataFrame) -> np.ndarray:
    """Group ids such that rows sharing a script id or a normalised text share a group."""
    keys = []
    if "script" in table.columns:
        keys.append(table["script"].fillna("").astype(str).str.strip())
    if "text" in table.columns:
        keys.append(normalize_texts(table["text"]))
    if not keys:
        raise SplitError("the table has neither a script nor a text column to group by")
    return connected_groups(keys)


def connected_groups(keys: list[pd.Series]) -> np.ndarray:
    """Connected components of rows linked by equal non-empty values in any key column
    (a union-find over the bipartite row-value graph, done by scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(keys[0])
    rows, cols = [], []
    offset = n  # value nodes come after the row nodes
    for key in keys:
        values = key.to_numpy()
        codes = pd.factorize(values)[0]
        present = (values != "") & (codes >= 0)
        rows.append(np.flatnonzero(present))
        cols.append(codes[present] + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    return pd.factorize(component[:n])[0]


def assign_groups(
    groups: np.ndarray,
    labels: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
    what: str,
) -> np.ndarray:
    """Deal whole groups out to parts so each part's label counts approach its share.

    First guess: groups in seeded random order, stratified by each group's main label,
    each placed by where the midpoint of its rows falls on the cumulative fractions
    (test, then val, then train). Then (up to 20k groups) a local search moves single
    groups to another part while that lowers sum over parts and labels of
    ((count - target) / label total)^2, never emptying a part. Random start, so
    different seeds give different, equally balanced splits.
    """
    names = needed_parts(fractions)
    n_groups = int(groups.max()) + 1
    if n_groups < len(names):
        raise SplitError(
            f"only {n_groups} {what} for {len(names)} parts ({', '.join(names)}); "
            "use fewer parts (val size 0) or another strategy"
        )
    n_labels = int(labels.max()) + 1
    counts = np.zeros((n_groups, n_labels))
    np.add.at(counts, (groups, labels), 1)
    sizes = counts.sum(axis=1)
    frac = np.array([fractions[p] for p in names])
    targets = frac[:, None] * counts.sum(axis=0)[None, :]

    # First guess: cumulative fractions, in the order test, val, train.
    placement_order = [names.index(p) for p in ("test", "val", "train") if p in names]
    bounds = np.cumsum(frac[placement_order])
    order = rng.permutation(n_groups)
    main_label = np.argmax(counts + rng.random(counts.shape) * 1e-3, axis=1)
    assign = np.empty(n_groups, dtype=int)
    for stratum in np.unique(main_label):
        members = order[main_label[order] == stratum]
        cum = np.cumsum(sizes[members])
        midpoint = (cum - sizes[members] / 2) / cum[-1]
        slot = np.minimum(np.searchsorted(bounds, midpoint, side="right"), len(bounds) - 1)
        assign[members] = np.array(placement_order)[slot]

    current = np.zeros_like(targets)
    np.add.at(current, assign, counts)
    members_per_part = np.bincount(assign, minlength=len(names))

    # Every part needs at least one group: move the smallest groups of the fullest part.
    for p in np.flatnonzero(members_per_part == 0):
        donor = int(np.argmax(members_per_part))
        candidates = np.flatnonzero(assign == donor)
        g = candidates[np.argmin(sizes[candidates])]
        assign[g] = p
        current[donor] -= counts[g]
        current[p] += counts[g]
        members_per_part[donor] -= 1
        members_per_part[p] += 1

    if n_groups <= _LOCAL_SEARCH_MAX_GROUPS:
        weight = 1.0 / np.maximum(counts.sum(axis=0), 1.0) ** 2
        for _ in range(_LOCAL_SEARCH_PASSES):
            moved = False
            for g in rng.permutation(n_groups):
                p = assign[g]
                if members_per_part[p] == 1:
                    continue
                v = counts[g]
                dev = current - targets
                delta = ((2 * v * (dev - dev[p]) + 2 * v * v) * weight).sum(axis=1)
                delta[p] = 0.0
                q = int(np.argmin(delta))
                if delta[q] < -1e-12:
                    assign[g] = q
                    current[p] -= v
                    current[q] += v
                    members_per_part[p] -= 1
                    members_per_part[q] += 1
                    moved = True
            if not moved:
                break
    return np.array(names, dtype=object)[assign[groups]]
