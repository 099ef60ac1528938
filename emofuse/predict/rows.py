"""A prediction as output: the one place that turns a prediction into what callers write.

:func:`prediction_fields` reads a prediction (a :class:`emofuse.bundle.Prediction` or any
predictor's look-alike) into its fields: label, probabilities, text, warnings, the
single-modality probabilities and their agreement, and the ``uncertain`` mark by the one
rule of :func:`emofuse.head.confidence.is_uncertain`. The service answers these fields as
JSON. :func:`prediction_row` lays the same fields out as the flat columns of a table, in
the order and under the names of a :class:`RowLayout`: :data:`MANIFEST_ROW` for
``emofuse predict --manifest`` (``predicted``, ``p_<label>``, ``p_<modality>_<label>``,
``agree``, ``warnings``...), :data:`SEGMENT_ROW` for a timeline's segments; both with a
``speaker_clips`` column when the bundle adapts to speakers. A whole matrix
of probabilities becomes a table with :func:`predictions_frame` (``emofuse evaluate``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from emofuse.head.confidence import is_uncertain
from emofuse.head.score import labels_of

if TYPE_CHECKING:
    import pandas as pd


class PredictionLike(Protocol):
    """What is read from a prediction; ``text``, ``extra``, ``by_modality`` and ``agree``
    are optional (a predictor other than a bundle may lack them)."""

    label: str
    probabilities: Mapping[str, float]


def prediction_fields(
    prediction: PredictionLike, *, min_confidence: float | None = None
) -> dict[str, Any]:
    """``label``, ``probabilities`` (floats), ``text``, ``warnings`` (a list),
    ``by_modality``, ``agree``, ``uncertain`` (the top probability below
    ``min_confidence``; never with None or 0) and ``speaker_clips`` (how many clips the
    speaker statistics came from; None when not adapted to a speaker)."""
    probabilities = {k: float(v) for k, v in prediction.probabilities.items()}
    extra = getattr(prediction, "extra", None) or {}
    return {
        "label": prediction.label,
        "probabilities": probabilities,
        "text": getattr(prediction, "text", None),
        "warnings": list(extra.get("warnings") or []),
        "by_modality": getattr(prediction, "by_modality", None),
        "agree": getattr(prediction, "agree", None),
        "uncertain": is_uncertain(probabilities, min_confidence),
        "speaker_clips": getattr(prediction, "speaker_clips", None),
    }


#: The column groups a :class:`RowLayout` may order. ``extra`` flattens whatever else a
#: prediction's ``extra`` carries (warnings only when it has some); ``warnings`` is one
#: column always.
GROUPS = (
    "label", "confidence", "uncertain", "probabilities", "text", "by_modality", "agree",
    "speaker_clips", "warnings", "extra",
)  # fmt: skip


@dataclass(frozen=True)
class RowLayout:
    """Which columns a table gives each prediction, in which order, under which names."""

    #: The column groups in order (see :data:`GROUPS`).
    groups: tuple[str, ...]
    #: The name of the label column, and of the transcript column.
    label: str = "predicted"
    text: str = "text_used"
    #: Probabilities rounded to this many decimals (None: as computed).
    digits: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown row groups {sorted(unknown)}; known: {GROUPS}")


#: ``emofuse predict --manifest``: after the manifest's own columns (an ``error`` follows).
MANIFEST_ROW = RowLayout(
    ("label", "uncertain", "text", "probabilities", "by_modality", "agree", "speaker_clips",
     "warnings")
)  # fmt: skip
#: A timeline's segments (after ``start_s``, ``end_s``; ``channel`` before them).
SEGMENT_ROW = RowLayout(
    ("label", "confidence", "uncertain", "probabilities", "text", "extra", "by_modality",
     "agree", "speaker_clips"),
    label="label", text="text", digits=4,
)  # fmt: skip


def prediction_row(
    prediction: PredictionLike | None,
    labels: Sequence[str],
    layout: RowLayout = MANIFEST_ROW,
    *,
    min_confidence: float | None = None,
    modalities: Sequence[str] | None = None,
    with_text: bool = True,
    speaker_clips: bool = False,
) -> dict[str, Any]:
    """One table row of ``prediction`` (None: an input that failed, every column blank).

    ``uncertain`` is a column only when a ``min_confidence`` is given (the label is kept
    either way); the transcript only ``with_text``. ``modalities``: the single-modality
    heads every row has columns for (``p_<modality>_<label>``, NaN where missing, and
    ``agree`` for two heads); None: those the prediction carries, ``agree`` when it has
    one. ``speaker_clips``: a ``speaker_clips`` column (the bundle adapts to speakers):
    the clip count, blank ('') for a row adapted to no speaker.
    """
    fields = prediction_fields(prediction, min_confidence=min_confidence) if prediction else None
    probs = fields["probabilities"] if fields else {}
    row: dict[str, Any] = {}
    for group in layout.groups:
        if group == "label":
            row[layout.label] = fields["label"] if fields else ""
        elif group == "confidence":
            top = max(probs.values()) if probs else math.nan
            row["confidence"] = _rounded(probs.get(fields["label"], top) if fields else top, layout)
        elif group == "uncertain" and min_confidence is not None:
            row["uncertain"] = fields["uncertain"] if fields else None
        elif group == "probabilities":
            for label in labels:
                row[f"p_{label}"] = _rounded(probs.get(label, 0.0) if fields else math.nan, layout)
        elif group == "text" and with_text:
            row[layout.text] = (fields["text"] if fields else None) or ""
        elif group == "by_modality":
            row.update(_modality_columns(fields, labels, modalities, layout))
        elif group == "agree":
            agree = fields["agree"] if fields else None
            two_heads = modalities is not None and len(modalities) == 2
            if two_heads or (modalities is None and agree is not None):
                row["agree"] = None if agree is None else bool(agree)
        elif group == "speaker_clips" and speaker_clips:
            clips = fields["speaker_clips"] if fields else None
            row["speaker_clips"] = "" if clips is None else int(clips)
        elif group == "warnings":
            row["warnings"] = "; ".join(str(w) for w in fields["warnings"]) if fields else ""
        elif group == "extra" and prediction is not None:
            row.update(_extra_columns(getattr(prediction, "extra", None) or {}))
    return row


def _rounded(value: float, layout: RowLayout) -> float:
    value = float(value)
    return value if layout.digits is None else round(value, layout.digits)


def _modality_columns(
    fields: dict[str, Any] | None,
    labels: Sequence[str],
    modalities: Sequence[str] | None,
    layout: RowLayout,
) -> dict[str, float]:
    """A ``both`` bundle's single-modality distributions: ``p_speech_<label>``,
    ``p_text_<label>``."""
    by_modality = (fields["by_modality"] if fields else None) or {}
    out: dict[str, float] = {}
    for modality in by_modality if modalities is None else modalities:
        probs = by_modality.get(modality)
        for label in labels:
            value = probs.get(label, 0.0) if probs is not None else math.nan
            out[f"p_{modality}_{label}"] = _rounded(value, layout)
    return out


def _extra_columns(extra: Mapping[str, Any]) -> dict[str, Any]:
    """What else a prediction's ``extra`` carries, as flat columns: warnings joined in
    one column, ``{"scores": {"happy": 0.7}}`` -> ``scores_p_happy``, and
    ``{"by_modality": {"speech": {"happy": 0.7}}}`` -> ``speech_p_happy``."""
    out: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "warnings":
            out["warnings"] = "; ".join(str(v) for v in value) if value else ""
        elif isinstance(value, Mapping):
            for sub, inner in value.items():
                if isinstance(inner, Mapping):
                    for label, p in inner.items():
                        if _is_number(p):
                            out[f"{sub}_p_{label}"] = round(float(p), 4)
                elif _is_number(inner):
                    out[f"{key}_p_{sub}"] = round(float(inner), 4)
                elif isinstance(inner, str):
                    out[f"{key}_{sub}"] = inner
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def predictions_frame(
    table: pd.DataFrame,
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    min_confidence: float | None = None,
) -> pd.DataFrame:
    """One row per clip: id, label (true), predicted, ``uncertain`` (only when a
    ``min_confidence`` is given: :func:`emofuse.head.confidence.is_uncertain`), then one
    ``p_<label>`` column each."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": table["id"].astype(str).to_numpy(),
            "label": table["label"].astype(str).to_numpy() if "label" in table else "",
            "predicted": labels_of(probabilities, labels),
        }
    )
    if min_confidence is not None:
        frame["uncertain"] = [is_uncertain(row, min_confidence) for row in probabilities]
    for k, label in enumerate(labels):
        frame[f"p_{label}"] = probabilities[:, k]
    return frame
