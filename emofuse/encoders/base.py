"""The one small interface every speech and text encoder implements.

An encoder turns a batch of waveforms (speech) or strings (text) into a float32 matrix,
one row per item. Its fingerprint names exactly what it computes, so the feature store
never reuses vectors made with other settings.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ, SPEECH

FINGERPRINT_CHARS = 16


def stable_hash(payload: Any, chars: int = FINGERPRINT_CHARS) -> str:
    """A short hex digest of a JSON-able payload (sorted keys, so order never matters)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


class EncoderError(RuntimeError):
    """An encoder that cannot be built or run (bad name, missing weights, bad state)."""


def text_item(text: object, encoder_name: str) -> str:
    """One item of a text batch, or an error naming the encoder and what it got instead."""
    if not isinstance(text, str):
        raise EncoderError(
            f"{encoder_name}: expected text (str), got {type(text).__name__}: {text!r:.60}"
        )
    return text


class Encoder(ABC):
    """Base class. Subclasses set ``modality`` and ``name`` and implement ``encode``."""

    modality: ClassVar[str]  # one of emofuse.modalities.ENCODER_MODALITIES
    name: ClassVar[str]
    #: True for encoders (e.g. TF-IDF) that must be fitted on training text first.
    needs_fit: ClassVar[bool] = False
    #: True for fitted encoders whose ``fit`` also needs the training labels.
    needs_labels: ClassVar[bool] = False
    #: Speech encoders: the rate their waveforms must have.
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ

    @property
    @abstractmethod
    def spec(self) -> str:
        """The string that `build_encoder(spec, modality)` turns back into this encoder."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of one output vector."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able settings that determine the output (model, layer, pooling, ...)."""

    @abstractmethod
    def encode(self, batch: Sequence[np.ndarray] | Sequence[str]) -> np.ndarray:
        """Vectors for a batch: shape (len(batch), dim), dtype float32."""

    def state_fingerprint(self) -> str:
        """Hash of fitted state; '' for encoders with none."""
        return ""

    def fingerprint(self) -> str:
        return stable_hash(
            {
                "name": self.name,
                "modality": self.modality,
                "config": self.config(),
                "state": self.state_fingerprint(),
            }
        )

    def fit(  # noqa: B027 - optional hook
        self, texts: Sequence[str], labels: Sequence[object] | None = None
    ) -> None:
        """Fit on training texts (only encoders with ``needs_fit``), and their labels (one
        per text) for encoders with ``needs_labels``."""

    @property
    def is_fitted(self) -> bool:
        return True

    def save_state(self, directory: str | Path) -> None:  # noqa: B027 - optional hook
        """Write fitted state (if any) into ``directory``."""

    def load_state(self, directory: str | Path) -> None:  # noqa: B027 - optional hook
        """Read fitted state written by :meth:`save_state`."""

    def parts(self) -> list[Encoder]:
        """The encoders whose vectors are stored separately (a concatenation's parts)."""
        return [self]

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"{type(self).__name__}({self.spec!r}, not fitted)"
        return f"{type(self).__name__}({self.spec!r}, dim={self.dim}, fp={self.fingerprint()})"


class ConcatEncoder(Encoder):
    """Several encoders of one modality whose vectors are concatenated in order."""

    name = "concat"

    def __init__(self, encoders: Sequence[Encoder]):
        if not encoders:
            raise EncoderError("a concatenation needs at least one encoder")
        modalities = {e.modality for e in encoders}
        if len(modalities) != 1:
            raise EncoderError(f"cannot concatenate encoders of modalities {sorted(modalities)}")
        rates = {e.sample_rate_hz for e in encoders}
        if modalities == {SPEECH} and len(rates) != 1:
            raise EncoderError(f"speech encoders disagree on sample rate: {sorted(rates)}")
        self._encoders = list(encoders)
        self.sample_rate_hz = encoders[0].sample_rate_hz

    @property
    def modality(self) -> str:  # type: ignore[override]
        return self._encoders[0].modality

    @property
    def needs_fit(self) -> bool:  # type: ignore[override]
        return any(e.needs_fit for e in self._encoders)

    @property
    def is_fitted(self) -> bool:
        return all(e.is_fitted for e in self._encoders)

    @property
    def spec(self) -> str:
        return "+".join(e.spec for e in self._encoders)

    @property
    def dim(self) -> int:
        return sum(e.dim for e in self._encoders)

    def config(self) -> dict[str, Any]:
        return {"parts": [e.fingerprint() for e in self._encoders]}

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return any(e.needs_labels for e in self._encoders)

    def fit(self, texts: Sequence[str], labels: Sequence[object] | None = None) -> None:
        for e in self._encoders:
            if e.needs_labels:
                e.fit(texts, labels)
            elif e.needs_fit:
                e.fit(texts)

    def encode(self, batch: Sequence[np.ndarray] | Sequence[str]) -> np.ndarray:
        return np.concatenate([e.encode(batch) for e in self._encoders], axis=1)

    def save_state(self, directory: str | Path) -> None:
        for i, e in enumerate(self._encoders):
            e.save_state(Path(directory) / f"part{i}-{e.name}")

    def load_state(self, directory: str | Path) -> None:
        for i, e in enumerate(self._encoders):
            e.load_state(Path(directory) / f"part{i}-{e.name}")

    def parts(self) -> list[Encoder]:
        return list(self._encoders)
