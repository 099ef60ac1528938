"""The feature store: every vector computed once, kept on disk, resumable after a kill.

- :mod:`~emofuse.features.keys`: which stored vector a table row reads (utterance id for
  speech, the hash of the cleaned text for text).
- :mod:`~emofuse.features.store`: :class:`FeatureStore` (directories, reading, and the
  report of what :meth:`FeatureStore.ensure` did).
- :mod:`~emofuse.features.compute`: computing what is missing (batches, failures,
  workers, Accelerate ranks).
- :mod:`~emofuse.features.extract`: fitting text encoders on the training part, and
  :func:`extract_features`, the one call that builds, fits and fills.
- :mod:`~emofuse.features.options`: :class:`ExtractOptions`, how extraction batches and
  runs.
- :mod:`~emofuse.features.io`: the on-disk layout of one encoder part, written atomically.
"""

from emofuse.features.compute import current_ranks
from emofuse.features.extract import extract_features
from emofuse.features.io import Failure, FeatureStoreError
from emofuse.features.keys import clean_text, row_keys, text_key
from emofuse.features.options import ExtractOptions
from emofuse.features.store import (
    ExtractReport,
    FeatureStore,
    MissingFeaturesError,
    PartReport,
)

__all__ = [
    "ExtractOptions",
    "ExtractReport",
    "Failure",
    "FeatureStore",
    "FeatureStoreError",
    "MissingFeaturesError",
    "PartReport",
    "clean_text",
    "current_ranks",
    "extract_features",
    "row_keys",
    "text_key",
]
