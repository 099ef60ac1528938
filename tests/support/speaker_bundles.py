"""Bundles that adapt to speakers, for the prediction-side tests: a speaker normalisation
fitted on a table's training rows and attached to a loaded bundle (what a bundle trained
with ``emofuse train --speaker-norm on`` carries), and the statistics a caller would give."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.audio import load_waveform
from emofuse.head.speaker_norm import SpeakerNorm
from emofuse.head.speaker_stats import Moments
from emofuse.modalities import SPEECH
from emofuse.text import clean_text


def speech_vectors(bundle, audio: Sequence[str | Path]) -> np.ndarray:
    """The bundle's speech vectors of these clips."""
    encoder = bundle.encoder(SPEECH)
    waves = [load_waveform(a, encoder.sample_rate_hz) for a in audio]
    return np.asarray(encoder.encode(waves), dtype=np.float64)


def fit_norm(bundle, table: pd.DataFrame, *, k: float = 1.0) -> SpeakerNorm:
    """A normalisation of the speech block fitted on the table's ``train`` rows."""
    train = table[table["part"] == "train"]
    x = speech_vectors(bundle, list(train["audio"]))
    return SpeakerNorm.fit(x, list(train["speaker"]), k=k, start=0, stop=x.shape[1])


def adapting(bundle, norm: SpeakerNorm):
    """``bundle`` with ``norm`` attached (returned for chaining)."""
    bundle.speaker_norm = norm
    return bundle


def moments_of(bundle, audio: Sequence[str | Path], texts: Sequence[str] | None = None) -> Moments:
    """One speaker's statistics over these clips, as the normalisation accumulates them."""
    norm = bundle.speaker_norm
    x = speech_vectors(bundle, audio)
    if bundle.needs_text:  # whole rows x = [A; T]: a composition correction reads them
        encoder = bundle.encoder("text")
        x = np.hstack([x, encoder.encode([clean_text(t) for t in texts or [""] * len(audio)])])
    return norm.moments(x.astype(np.float32))
