"""A channel's segments scored as one speaker, for a bundle that adapts to speakers.

Each channel of a recording is one speaker (``mix``: the mixed-down recording is one).
Its statistics come from the channel's own segments, never from labels:

- ``whole`` (the default): the statistics of every segment of the channel. The timeline
  already reads the recording twice (segments, then their audio); in the second pass each
  segment is encoded as it is cut out and its vector kept (vectors only, a few KB per
  segment, never audio), and all are scored once the channel is read;
- ``causal``: only what came before each segment, and the segment itself (as the
  service's speaker sessions do), for live use where later speech is not there yet: the
  first segment is scored with the statistics of one clip, held close to the training
  set's by the shrinkage, and adaptation strengthens as the recording goes on.

``speaker_clips`` says how many segments each segment's statistics came from. A bundle
that does not adapt is called as before (``bundle.predict``), whatever the mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from emofuse.bundle.prediction import Prediction
    from emofuse.head.speaker_stats import Moments
    from emofuse.predict.encoded import Encoded

Adapt = Literal["whole", "causal"]
ADAPT_CHOICES = ("whole", "causal")


def adapts_to_speakers(bundle: Any) -> bool:
    return getattr(bundle, "speaker_norm", None) is not None


class SegmentScorer:
    """Scores one channel's segments batch by batch (:meth:`add`) and, in ``whole`` mode,
    once the channel is read (:meth:`finish`); each returns ``(segment index, prediction)``
    pairs in segment order."""

    def __init__(
        self,
        bundle: Any,
        *,
        adapt: Adapt,
        speaker: str,
        asr: Any,
        batch_size: int,
    ):
        # imported on use: `emofuse --help` reads ADAPT_CHOICES and must not load torch
        from emofuse.predict.engine import PredictionEngine

        if adapt not in ADAPT_CHOICES:
            raise ValueError(f"adapt must be one of {', '.join(ADAPT_CHOICES)}, not {adapt!r}")
        self.bundle, self.adapt, self.speaker, self.asr = bundle, adapt, speaker, asr
        self.engine = (
            PredictionEngine(bundle, asr=asr, batch_size=batch_size)
            if adapts_to_speakers(bundle)
            else None
        )
        self.running: dict[str, Moments] = {}
        self._kept: list[Encoded] = []
        self._indices: list[int] = []

    def add(
        self, indices: Sequence[int], audio: Sequence[Any], texts: Sequence[str | None]
    ) -> list[tuple[int, Prediction]]:
        """Score (or, ``whole``, encode and keep) one batch of segments."""
        if self.engine is None:  # no adaptation: the bundle (or any predictor) as before
            needs_asr = self.asr is not None and any(t is None for t in texts)
            kwargs = {"asr": self.asr} if needs_asr else {}
            predictions = self.bundle.predict(list(audio), list(texts), **kwargs)
            return list(zip(indices, predictions, strict=True))
        from emofuse.predict.engine import PredictInput

        items = [
            PredictInput(a, t, speaker=self.speaker) for a, t in zip(audio, texts, strict=True)
        ]
        if self.adapt == "causal":
            predictions = self.engine.predict(items, running_stats=self.running)
            return list(zip(indices, predictions, strict=True))
        self._kept.append(self.engine.encode(items))
        self._indices += list(indices)
        return []

    def finish(self) -> list[tuple[int, Prediction]]:
        """``whole``: every kept segment scored with the channel's statistics."""
        if self.engine is None or not self._kept:
            return []
        from emofuse.predict.encoded import Encoded

        encoded = Encoded.join(self._kept, int(self.bundle.head.input_dim))
        predictions = self.engine.score(encoded, speaker_stats=self.engine.statistics(encoded))
        self._kept = []
        return list(zip(self._indices, predictions, strict=True))
