"""The names every module shares: modalities and the default sample rate."""

from __future__ import annotations

from typing import Literal

SPEECH = "speech"
TEXT = "text"
BOTH = "both"

#: What a model reads (``--modality``): one input or the fusion of both.
MODALITIES: tuple[str, ...] = (SPEECH, TEXT, BOTH)
#: What an encoder reads.
ENCODER_MODALITIES: tuple[str, ...] = (SPEECH, TEXT)

Modality = Literal["speech", "text", "both"]

#: The rate every built-in speech encoder, the demo corpus, the page's recorder and Vosk use.
DEFAULT_SAMPLE_RATE_HZ = 16_000


def inputs_of(modality: str) -> tuple[str, ...]:
    """The encoder modalities a model of ``modality`` reads, speech first (x = [A; T])."""
    if modality == BOTH:
        return (SPEECH, TEXT)
    if modality in ENCODER_MODALITIES:
        return (modality,)
    raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
