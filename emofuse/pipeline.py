"""One call from a split table to a trained, evaluated, saved model.

`train_and_evaluate` is what the CLI, the demo and experiment grids use: features come
from the feature store (computed once, reused by every later run), text encoders are fitted
on the training rows only, rows whose features failed are dropped and reported, the head
is trained (:func:`emofuse.head.recipe.train_head_for_recipe`: model selection by CV and
speaker statistics for small-data, then :func:`~emofuse.head.train.fit_head`) and scored on
``test`` (rows adapted by their speaker's statistics when the model adapts). What ``val`` is
for depends on the recipe (``TrainConfig.recipe``):

- ``small-data`` (the default): at least ``min_steps`` optimiser steps on ``train`` with
  input noise, weight decay and dropout, the last epoch kept (``patience`` > 0: the best
  val epoch), an exact logistic regression blended in, then, with a ``val`` part, the same
  training again on ``train`` + ``val`` (``refit``), which is the model saved; so its val
  figures are not held-out figures;
- ``paper``: ``epochs`` passes on ``train``, the epoch with the best val UAR kept.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.encoders.base import Encoder
from emofuse.features import ExtractReport, FeatureStore, extract_features
from emofuse.head.recipe import train_head_for_recipe
from emofuse.head.score import probabilities_from_features
from emofuse.head.train import TrainConfig, TrainedHead
from emofuse.metrics import compute_metrics, format_metrics, probability_metrics, write_metrics
from emofuse.modalities import ENCODER_MODALITIES, inputs_of
from emofuse.predict.rows import predictions_frame
from emofuse.splits import PARTS

EVALUATION_DIR = "evaluation"


class PipelineError(ValueError):
    """A table or request the pipeline cannot run on; the message says how to fix it."""


@dataclass
class TableFeatures:
    """Vectors for the rows of a table whose every modality has a stored vector."""

    features: dict[str, np.ndarray]  # modality -> (n_ok, dim), rows in table order
    ok: np.ndarray  # bool mask over the table's rows
    dropped: pd.DataFrame  # id, modality, reason for rows left out

    def stacked(self) -> np.ndarray:
        """x = [A; T]: the modalities concatenated in the head's order."""
        return np.hstack([self.features[m] for m in ENCODER_MODALITIES if m in self.features])

    @property
    def input_dims(self) -> dict[str, int]:
        return {m: self.features[m].shape[1] for m in ENCODER_MODALITIES if m in self.features}


@dataclass
class RunResult:
    bundle_dir: Path | None
    metrics: dict | None  # on the test part (None when the table has no test rows)
    trained: TrainedHead
    encoders: dict[str, Encoder] = field(default_factory=dict)
    #: on the val part, by the model saved (small-data with refit: it trained on val too)
    val_metrics: dict | None = None
    dropped: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["id", "part", "modality", "reason"])
    )
    sizes: dict[str, int] = field(default_factory=dict)  # rows used per part
    predictions: pd.DataFrame | None = None  # test rows: id, label, predicted, p_<label>...


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _failure_reasons(reports: Sequence[ExtractReport]) -> dict[tuple[str, str], str]:
    reasons: dict[tuple[str, str], str] = {}
    for report in reports:
        for failure in report.failed:
            for utterance in failure.ids:
                reasons.setdefault((report.modality, str(utterance)), failure.describe())
    return reasons


def features_for(
    table: pd.DataFrame,
    encoders: Mapping[str, Encoder],
    store: FeatureStore,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    workers: int = 1,
    reports: Sequence[ExtractReport] | None = None,
) -> TableFeatures:
    """Vectors of ``table`` for each encoder (computing only what the store lacks) for the
    rows where every modality succeeded; the others are listed in ``dropped``."""
    reports = list(reports or [])
    ok = np.ones(len(table), dtype=bool)
    missing: dict[str, np.ndarray] = {}
    for modality in ENCODER_MODALITIES:
        if modality not in encoders:
            continue
        encoder = encoders[modality]
        if not any(r.modality == modality and r.spec == encoder.spec for r in reports):
            reports.append(
                store.ensure(
                    table, encoder, batch_size=batch_size, progress=progress, workers=workers
                )
            )
        available = store.available(table, encoder)
        missing[modality] = ~available
        ok &= available
    reasons = _failure_reasons(reports)
    ids = table["id"].astype(str).to_numpy()
    rows = []
    for modality, absent in missing.items():
        for i in np.flatnonzero(absent):
            rows.append(
                {
                    "id": ids[i],
                    "modality": modality,
                    "reason": reasons.get((modality, ids[i]), "no vector in the feature store"),
                }
            )
    kept = table[ok]
    features = {m: store.get(kept, encoders[m]) for m in ENCODER_MODALITIES if m in encoders}
    return TableFeatures(features, ok, pd.DataFrame(rows, columns=["id", "modality", "reason"]))


def _column(table: pd.DataFrame, name: str) -> np.ndarray | None:
    """A table column as names (blank for missing), None when the table has none: test
    rows are adapted by their speaker's statistics, blanks left as they are."""
    if name not in table.columns:
        return None
    return table[name].fillna("").astype(str).to_numpy()


def _rows(values: np.ndarray | None, mask: np.ndarray) -> list | None:
    return None if values is None else values[mask].tolist()


def _label_indices(table: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    lookup = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(table["label"].astype(str)) - set(lookup))
    if unknown:
        raise PipelineError(
            f"labels {unknown} are not in the class list {list(labels)}; filter those rows "
            "or pass the full label list"
        )
    return table["label"].astype(str).map(lookup).to_numpy(dtype=np.int64)


def _specs_for(modality: str, speech: str | Encoder | None, text: str | Encoder | None):
    needed = inputs_of(modality)
    if "speech" in needed and not speech:
        raise PipelineError(f"modality {modality!r} needs a speech encoder (--speech SPEC)")
    if "text" in needed and not text:
        raise PipelineError(f"modality {modality!r} needs a text encoder (--text SPEC)")
    return (speech if "speech" in needed else None), (text if "text" in needed else None)


def _rows_with_inputs(table: pd.DataFrame, modality: str) -> pd.DataFrame:
    """The rows a ``modality`` model can read: a text-only table refuses speech and both
    in one line; a mixed one keeps the rows with audio (with a warning)."""
    from emofuse.corpus.text_only import NoAudioError, require_audio

    try:
        return require_audio(table, modality)
    except NoAudioError as err:
        raise PipelineError(str(err)) from None


#: What an evaluation folder holds (metrics.write_metrics and write_evaluation).
EVALUATION_FILES = (
    "metrics.json", "confusion.csv", "confusion.png", "per_class.csv", "reliability.png",
    "predictions.csv", "dropped.csv",
)  # fmt: skip


def write_evaluation(
    out_dir: Path,
    metrics: dict,
    predictions: pd.DataFrame,
    dropped: pd.DataFrame,
    *,
    y_true: np.ndarray | None = None,
    proba: np.ndarray | None = None,
) -> Path:
    """metrics.json, confusion.csv/.png, per_class.csv, predictions.csv (+ dropped.csv),
    and with the probabilities, reliability.png. A write that fails (a full disk) names
    ``out_dir``."""
    from emofuse.outputs import naming

    with naming(out_dir):
        write_metrics(metrics, out_dir, y_true=y_true, proba=proba)
        predictions.to_csv(out_dir / "predictions.csv", index=False)
        if len(dropped):
            dropped.to_csv(out_dir / "dropped.csv", index=False)
    return out_dir


def _counts_per_part(table: pd.DataFrame, label: str) -> str:
    rows = table[table["label"].astype(str) == label]
    counts = rows["part"].astype(str).value_counts()
    return " ".join(f"{part} {int(counts.get(part, 0))}" for part in PARTS)


def _check_labels(table: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    """Refuse what would silently give a wrong model: blank labels (a class ``''``), and
    classes with no training clip (never predicted, yet counted in UAR)."""
    blank = table["label"].isna() | (table["label"].astype(str).str.strip() == "")
    if blank.any():
        per_part = table.loc[blank, "part"].astype(str).value_counts().to_dict()
        raise PipelineError(
            f"{int(blank.sum())} rows have no label ("
            + ", ".join(f"{part} {n}" for part, n in per_part.items())
            + "): label them or drop them before training"
        )
    labels = [label for label in labels if str(label).strip()]
    train_rows = table[table["part"] == "train"]
    if train_rows.empty:
        raise PipelineError("no rows with part == 'train'")
    present = set(train_rows["label"].astype(str))
    untrained = [label for label in labels if label not in present]
    if untrained:
        raise PipelineError(
            "no training clips (part == 'train') for "
            + "; ".join(f"{label} ({_counts_per_part(table, label)})" for label in untrained)
            + ": the model could never predict them; add clips to the train part or leave "
            "those labels out"
        )
    return labels


def train_and_evaluate(
    table: pd.DataFrame,
    labels: Sequence[str],
    *,
    modality: str,
    store: FeatureStore | str | Path,
    speech: str | Encoder | None = None,
    text: str | Encoder | None = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    provenance: dict | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    workers: int = 1,
    verbose: bool = False,
) -> RunResult:
    """Extract (or reuse) features, train the head on ``part == 'train'`` (and ``val`` as
    the recipe says: module docstring), score ``test``, and write the bundle
    (+ ``evaluation/``) into ``out_dir``. ``progress``: bars, and one line per training
    phase; ``verbose``: one line per training epoch too (:mod:`emofuse.head.training_log`)."""
    config = config or TrainConfig()
    labels = list(labels)
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    speech, text = _specs_for(modality, speech, text)
    if "part" not in table.columns:
        raise PipelineError(
            "the table has no 'part' column: split it first (`emofuse split` or "
            "emofuse.splits.assign_split)"
        )
    bad_parts = sorted(set(table["part"].astype(str)) - set(PARTS))
    if bad_parts:
        raise PipelineError(f"unknown values in 'part': {bad_parts}; expected {list(PARTS)}")
    table = _rows_with_inputs(table, modality).reset_index(drop=True)
    labels = _check_labels(table, labels)
    y_all = _label_indices(table, labels)
    train_rows = table[table["part"] == "train"]

    reports: list[ExtractReport] = []
    encoders = extract_features(
        table, store=store, speech=speech, text=text, fit_table=train_rows,
        batch_size=batch_size, progress=progress, workers=workers, reports=reports,
    )  # fmt: skip
    got = features_for(table, encoders, store, progress=progress, reports=reports)
    dropped = got.dropped.merge(table[["id", "part"]], on="id", how="left")[
        ["id", "part", "modality", "reason"]
    ]
    if len(dropped):
        per_part = dropped.drop_duplicates("id")["part"].value_counts().to_dict()
        _say(
            f"dropped {dropped['id'].nunique()} of {len(table)} rows whose features failed "
            f"({', '.join(f'{p} {n}' for p, n in per_part.items())}), e.g. "
            + "; ".join(f"{r.id}: {r.reason}" for r in dropped.head(3).itertuples())
        )

    kept = table[got.ok].reset_index(drop=True)
    x = got.stacked()
    y = y_all[got.ok]
    part = kept["part"].to_numpy()
    sizes = {p: int((part == p).sum()) for p in PARTS}
    if sizes["train"] == 0:
        raise PipelineError("every training row was dropped: no features could be computed")
    tr, va, te = (part == p for p in PARTS)
    speakers = _column(kept, "speaker")
    scripts = _column(kept, "script")
    fitted = train_head_for_recipe(
        x[tr], y[tr], x[va] if va.any() else None, y[va] if va.any() else None,
        n_classes=len(labels), config=config, input_dims=got.input_dims,
        speakers_train=_rows(speakers, tr), speakers_val=_rows(speakers, va),
        scripts_train=_rows(scripts, tr), scripts_val=_rows(scripts, va),
        modality_heads=modality == "both", progress=progress, verbose=verbose,
    )  # fmt: skip
    trained, modality_heads = fitted.trained, fitted.modality_heads

    val_metrics = None
    if va.any():
        val_proba = probabilities_from_features(trained, x[va], speakers=_rows(speakers, va))
        val_metrics = compute_metrics(y[va], val_proba.argmax(axis=1), labels)
    metrics, predictions = None, None
    if te.any():
        proba = probabilities_from_features(trained, x[te], speakers=_rows(speakers, te))
        metrics = compute_metrics(y[te], proba.argmax(axis=1), labels)
        metrics.update(probability_metrics(y[te], proba, labels))
        predictions = predictions_frame(kept[te], proba, labels)
        if progress:
            _say(f"test: {format_metrics(metrics)}")
    elif progress:
        _say("no test rows (part == 'test'): the model is saved unscored")

    bundle_dir = None
    if out_dir is not None:
        from emofuse.bundle import save_bundle

        record = dict(provenance or {})
        record.setdefault("train_ids", kept.loc[tr, "id"].astype(str).tolist())
        record.setdefault("sizes", sizes)
        record.setdefault("dropped", int(dropped["id"].nunique()) if len(dropped) else 0)
        if val_metrics is not None:
            record.setdefault(
                "val_metrics", {k: val_metrics[k] for k in ("uar", "accuracy", "macro_f1", "n")}
            )

        def evaluation(folder: Path) -> None:  # inside the bundle before it is put in place
            if metrics is not None:
                write_evaluation(
                    folder / EVALUATION_DIR, metrics, predictions, dropped,
                    y_true=y[te], proba=proba,
                )  # fmt: skip

        bundle_dir = save_bundle(
            out_dir, trained, labels=labels, modality=modality, encoders=encoders,
            metrics=metrics, provenance=record, modality_heads=modality_heads,
            write_extra=evaluation,
        )  # fmt: skip
    return RunResult(
        bundle_dir=bundle_dir,
        metrics=metrics,
        trained=trained,
        encoders=encoders,
        val_metrics=val_metrics,
        dropped=dropped,
        sizes=sizes,
        predictions=predictions,
    )


@dataclass
class EvaluationResult:
    metrics: dict
    predictions: pd.DataFrame
    dropped: pd.DataFrame
    out_dir: Path | None = None
    seen_in_training: int = 0  # scored rows the bundle was trained on


def evaluate_bundle(
    bundle,
    table: pd.DataFrame,
    *,
    store: FeatureStore | str | Path,
    out_dir: str | Path | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    workers: int = 1,
) -> EvaluationResult:
    """Score a saved bundle on a labelled table, with features from the bundle's own
    encoders (through the store, so a second evaluation computes nothing) and
    probabilities from :func:`emofuse.head.score.probabilities_from_features`, the function
    `emofuse predict` and the service end in."""
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    table = _rows_with_inputs(table, bundle.modality).reset_index(drop=True)
    labels = bundle.labels
    y_all = _label_indices(table, labels)
    got = features_for(
        table, bundle.encoders(), store, batch_size=batch_size, progress=progress, workers=workers
    )
    examples = "; ".join(f"{r.id}: {r.reason}" for r in got.dropped.head(3).itertuples())
    if not got.ok.any():
        raise PipelineError(
            "no row of the table has features: nothing to evaluate"
            + (f" (e.g. {examples})" if examples else "")
        )
    if len(got.dropped):
        _say(
            f"dropped {got.dropped['id'].nunique()} of {len(table)} rows whose features "
            f"failed, e.g. {examples}"
        )
    proba = probabilities_from_features(
        bundle, got.features, speakers=_rows(_column(table, "speaker"), got.ok)
    )
    metrics = compute_metrics(y_all[got.ok], proba.argmax(axis=1), labels)
    metrics.update(probability_metrics(y_all[got.ok], proba, labels))
    predictions = predictions_frame(table[got.ok], proba, labels)
    seen = int(table.loc[got.ok, "id"].astype(str).isin(bundle.training_ids()).sum())
    if seen:
        _say(
            f"warning: {seen} of {int(got.ok.sum())} scored rows were used to train this "
            "bundle; their figures say nothing about new data (score the test part only)"
        )
    written = None
    if out_dir is not None:
        written = write_evaluation(
            Path(out_dir), metrics, predictions, got.dropped, y_true=y_all[got.ok], proba=proba
        )
    return EvaluationResult(metrics, predictions, got.dropped, written, seen)
