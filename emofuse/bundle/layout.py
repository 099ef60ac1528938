"""What a bundle folder holds: the file names, the format name and version, the placeholder
for models stored inside it, the checksum of its weights, and the error every part of the
bundle package raises. Saving (:mod:`emofuse.bundle.save`) and loading
(:mod:`emofuse.bundle.load`) both read them from here, so the two cannot drift apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

FORMAT_NAME = "emofuse-bundle"
#: 2: standardised values clipped (config.json standardizer.limit); a bundle without the
#: clip (the paper recipe, fine-tuning) is still written as 1, which older emofuse reads.
FORMAT_VERSION = 2
FORMAT_VERSION_WITHOUT_CLIP = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_IDS_FILE = "train_ids.txt"
#: Stands for the bundle directory in specs of models stored inside the bundle.
BUNDLE_PLACEHOLDER = "{bundle}"
#: Prefix of the speaker normalisation's arrays in the weights file (its meta: config.json
#: "speaker_norm"; absent: the bundle does not adapt to speakers).
SPEAKER_NORM_PREFIX = "speaker_norm."


class BundleError(ValueError):
    """A bundle that cannot be saved, loaded or used as asked; the message says why."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (the weights checksum of ``config.json``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
