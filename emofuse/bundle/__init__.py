"""A trained model as a folder a person can read: ``config.json`` says which encoders
(spec, fingerprint, width), labels and settings it expects; ``model.safetensors`` holds
the head and the standardiser; ``encoders/<modality>/state/`` holds fitted encoder state
(e.g. the TF-IDF vocabulary); ``train_ids.txt`` lists the training clips.

Loading needs none of the training data. Encoders are rebuilt from their spec on first
use and must reproduce the recorded fingerprint: a vector from a different encoder would
give confident nonsense, so a mismatch is refused with what differs.

The package, by idea: :mod:`~emofuse.bundle.layout` (file names, format version,
checksum, :class:`BundleError`), :mod:`~emofuse.bundle.records` (what is recorded about
the encoders and package versions, and what differs now), :mod:`~emofuse.bundle.save`
(:func:`save_bundle`, :func:`check_bundle_target`), :mod:`~emofuse.bundle.load`
(:class:`Bundle`, :class:`ModalityHead`) and :mod:`~emofuse.bundle.prediction`
(:class:`Prediction`).
"""

from __future__ import annotations

from emofuse.bundle.layout import BundleError
from emofuse.bundle.load import Bundle, ModalityHead
from emofuse.bundle.prediction import Prediction
from emofuse.bundle.records import package_versions
from emofuse.bundle.save import check_bundle_target, save_bundle

__all__ = [
    "Bundle",
    "BundleError",
    "ModalityHead",
    "Prediction",
    "check_bundle_target",
    "package_versions",
    "save_bundle",
]
