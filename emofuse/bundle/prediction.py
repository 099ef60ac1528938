"""What a bundle says about one clip: :class:`Prediction`, the answer of
:meth:`emofuse.bundle.Bundle.predict` (and of the prediction engine, the timeline and the
service, which all hand it on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    #: The text the model read (given or transcribed); None when it reads no text.
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``both`` bundles with single-modality heads: {"speech": {label: p}, "text": {...}}.
    by_modality: dict[str, dict[str, float]] | None = None
    #: Whether the speech-only and the text-only heads name the same label (None without).
    agree: bool | None = None
    #: Whether the top (fused) probability is below the ``min_confidence`` asked for
    #: (always False without one); ``label`` stays the most probable label either way.
    uncertain: bool = False
    #: How many clips the speaker statistics this prediction was adapted with came from
    #: (:mod:`emofuse.head.speaker_norm`: few clips, weak adaptation); None when the model
    #: does not adapt to speakers or no speaker was named, 0 for a named speaker without
    #: statistics (scored unadapted).
    speaker_clips: int | None = None
