"""Cross-validation folds in which no group (a speaker, a sentence, any column) is in two
parts, each with a val part carved out of its train part the same way; rows with the same
audio (duplicates) are never on two sides either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from emofuse.splits.groups import (
    assign_groups,
    duplicate_audio_groups,
    script_components,
    speaker_codes,
    with_duplicate_audio,
)
from emofuse.splits.parts import SplitError, label_codes, require

CV_SCHEMES = ("kfold", "logo")


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: ``part`` is aligned with the table's index and holds
    ``train`` / ``val`` / ``test``."""

    name: str
    part: pd.Series


def cross_validation_folds(
    table: pd.DataFrame,
    scheme: Literal["kfold", "logo"] = "kfold",
    *,
    k: int = 5,
    group: str = "speaker",
    seed: int = 0,
    val_size: float = 0.1,
) -> list[Fold]:
    """Folds in which no ``group`` value is in two parts.

    ``kfold``: stratified k-fold grouped by ``group`` (sklearn ``StratifiedGroupKFold``);
    every row is test in exactly one fold; folds named ``fold1`` ... ``foldk``.
    ``logo``: leave one group out over any column; a fold per distinct value, named by it.
    In each fold a val part (``val_size`` of the whole table, 0 for none) is carved out
    of train, grouped the same way, so model selection never looks at test.
    ``group="script"`` groups by script-or-text components (as the ``script`` split) for
    ``kfold`` and for the val carve; ``logo`` over ``script`` leaves one script id out.
    Rows with the same audio count as one group member (``kfold``, the val carve); in a
    ``logo`` fold, another group's copy of a test clip's audio is left out of the fold
    (its part is ``""``).
    """
    if scheme not in CV_SCHEMES:
        raise SplitError(f"scheme must be one of {', '.join(CV_SCHEMES)}, not {scheme!r}")
    if not 0 <= val_size < 1:
        raise SplitError(f"val_size must be between 0 and 1 (0 = no val part), not {val_size}")
    require(table, ["label", group], f"{scheme} folds")
    if group == "speaker":
        codes = speaker_codes(table, "speaker")
    elif group == "script":
        codes = script_components(table)
    else:
        values = table[group].fillna("").astype(str).str.strip()
        if (values == "").any():
            raise SplitError(
                f"{int((values == '').sum())} rows have an empty {group!r}; fill them or group by another column"
            )
        codes = pd.factorize(values.to_numpy())[0]
    labels = label_codes(table["label"])
    n_values = int(codes.max()) + 1 if len(codes) else 0  # what leave-one-out leaves out
    codes = with_duplicate_audio(codes, table)  # one clip is never on two sides
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(seed)

    tests: list[tuple[str, np.ndarray]] = []
    if scheme == "kfold":
        if k < 2:
            raise SplitError(f"k must be at least 2, not {k}")
        if k > n_groups:
            raise SplitError(
                f"k={k} folds but only {n_groups} distinct {group} groups; use k <= {n_groups}"
            )
        import warnings

        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # "the least populated class has fewer members than n_splits" is expected
            # for small classes; grouping already makes folds uneven.
            warnings.simplefilter("ignore", UserWarning)
            for i, (_, test_rows) in enumerate(splitter.split(np.zeros(len(table)), labels, codes)):
                test_mask = np.zeros(len(table), dtype=bool)
                test_mask[test_rows] = True
                tests.append((f"fold{i + 1}", test_mask))
    else:
        if n_values < 2:
            raise SplitError(f"leave-one-group-out needs at least 2 distinct {group} values")
        values = table[group].fillna("").astype(str).str.strip().to_numpy()
        for value in pd.unique(values):
            tests.append((str(value), values == value))

    duplicates = duplicate_audio_groups(table)
    folds = []
    for name, test_mask in tests:
        if not test_mask.any():
            raise SplitError(f"fold {name} has no test rows; use fewer folds")
        part = np.where(test_mask, "test", "train").astype(object)
        if val_size > 0:
            train_rows = np.flatnonzero(~test_mask)
            share = val_size * len(table) / len(train_rows)
            if share >= 1:
                raise SplitError(f"fold {name}: val_size={val_size} leaves no train rows")
            sub_codes = pd.factorize(codes[train_rows])[0]
            sub_labels = pd.factorize(labels[train_rows])[0]
            try:
                part[train_rows] = assign_groups(
                    sub_codes,
                    sub_labels,
                    {"train": 1 - share, "val": share},
                    rng,
                    f"{group} groups",
                )
            except SplitError as err:
                raise SplitError(f"fold {name}: cannot carve a val part: {err}") from None
        _leave_out_copies_of_test_audio(part, duplicates)
        folds.append(Fold(name=name, part=pd.Series(part, index=table.index, name="part")))
    return folds


def _leave_out_copies_of_test_audio(part: np.ndarray, groups: np.ndarray | None) -> None:
    """Give ``""`` (left out of the fold) to the train and val copies of audio that the
    test part holds: a leave-one-group-out fold takes a group's rows, not their copies."""
    if groups is None:
        return
    in_test = np.unique(groups[(part == "test") & (groups >= 0)])
    part[np.isin(groups, in_test) & (groups >= 0) & (part != "test")] = ""
