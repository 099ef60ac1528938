"""emofuse: data-efficient multimodal (speech + text) emotion recognition, Korean first.

The data flow, one package or module per step (docs/design.md has the layers):
corpus -> splits -> sampling -> features (encoders) -> head -> bundle -> predict/serve.

The public API is importable from here; each name is loaded on first use, so that
``import emofuse`` stays fast and imports no torch::

    from emofuse import Bundle, FeatureStore, TrainConfig, read_corpus, train_and_evaluate
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it. Loaded by name on first use, never imported
#: at the top (not even under TYPE_CHECKING): modules across the package read
#: ``emofuse.__version__`` and ``from emofuse import audio_checks``, and a static import
#: here would close import circles through the package root.
_PUBLIC: dict[str, str] = {
    "Bundle": "emofuse.bundle",
    "read_corpus": "emofuse.corpus",
    "assign_split": "emofuse.splits",
    "leakage_report": "emofuse.splits",
    "sample_train_part": "emofuse.sampling",
    "FeatureStore": "emofuse.features",
    "train_and_evaluate": "emofuse.pipeline",
    "TrainConfig": "emofuse.head.config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562), then keep it here."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'emofuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
