"""Prediction: raw clips (and transcripts) -> labels, for every caller.

- :mod:`emofuse.predict.engine`: :class:`PredictionEngine` (waveforms, text, speech
  recognition, batched encoding, scoring, warnings) on :class:`PredictInput` items.
- :mod:`emofuse.predict.manifest`: :func:`predict_manifest`, a manifest streamed through
  the engine into a CSV.
- :mod:`emofuse.predict.adapt`: which speaker statistics each clip is scored with
  (:func:`row_statistics`), for a bundle that adapts to speakers;
  :mod:`emofuse.predict.encoded`: inputs as vectors between encoding and scoring;
  :mod:`emofuse.predict.speakers`: ``predict --manifest`` grouped by a speaker column
  (a first pass for the statistics, vectors kept on disk).
- :mod:`emofuse.predict.rows`: a prediction as output, the one row builder of the
  manifest writer, the service and the timeline (:func:`prediction_row`), and
  :func:`predictions_frame` for a matrix of probabilities.

Names are imported on first use, so that the service's request checks (which need only
the row builder) do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name, by the module that holds it.
_NAMES = {
    "adapt": ("RowStats", "row_statistics"),
    "encoded": ("Encoded", "EncodedEach"),
    "engine": ("Outcome", "PredictInput", "PredictionEngine", "PredictionError", "encode_batches"),
    "manifest": ("ManifestSummary", "predict_manifest", "read_manifest_chunks"),
    "speakers": ("SpeakerPass", "predict_by_speaker"),
    "rows": (
        "MANIFEST_ROW", "SEGMENT_ROW", "RowLayout", "prediction_fields", "prediction_row",
        "predictions_frame",
    ),
}  # fmt: skip
_HOMES = {name: f"{__name__}.{module}" for module, names in _NAMES.items() for name in names}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module on first use."""
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(home), name)
