"""openSMILE eGeMAPSv02 functionals: 88 hand-crafted prosodic/spectral values per clip.

Runs offline (the openSMILE binary ships inside the ``opensmile`` wheel). openSMILE
returns NaN for a clip shorter than its first analysis window (~0.06 s at 16 kHz), so
clips shorter than :data:`MIN_DURATION_S` are zero-padded (silence appended) up to it:
a defined, finite vector rather than NaN. Any value that is still not finite becomes 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from emofuse.audio_checks import quiet_as_silence
from emofuse.encoders.base import Encoder, EncoderError
from emofuse.encoders.options import check_options, parse_choice
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ, SPEECH

#: Shorter clips are padded with silence to this length (openSMILE needs ~0.06 s).
MIN_DURATION_S = 0.1
FEATURE_SETS = ("eGeMAPSv02", "GeMAPSv01b", "ComParE_2016")
FEATURE_LEVEL = "Functionals"


class EgemapsEncoder(Encoder):
    """openSMILE functionals of one feature set (default eGeMAPSv02, 88 values)."""

    modality = SPEECH
    name = "egemaps"
    sample_rate_hz = DEFAULT_SAMPLE_RATE_HZ

    def __init__(self, feature_set: str = "eGeMAPSv02"):
        self.feature_set = parse_choice(feature_set, FEATURE_SETS, name="egemaps feature_set")
        import opensmile

        self._opensmile_version = opensmile.__version__
        self._smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set),
            feature_level=getattr(opensmile.FeatureLevel, FEATURE_LEVEL),
        )
        self._dim = len(self._smile.feature_names)

    @property
    def spec(self) -> str:
        return (
            "egemaps"
            if self.feature_set == "eGeMAPSv02"
            else f"egemaps?feature_set={self.feature_set}"
        )

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def feature_names(self) -> list[str]:
        return list(self._smile.feature_names)

    def config(self) -> dict[str, Any]:
        return {
            "feature_set": self.feature_set,
            "feature_level": FEATURE_LEVEL,
            "opensmile": self._opensmile_version,
            "sample_rate_hz": self.sample_rate_hz,
            "min_duration_s": MIN_DURATION_S,
        }

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(batch), self._dim), dtype=np.float32)
        min_samples = round(MIN_DURATION_S * self.sample_rate_hz)
        for i, wave in enumerate(batch):
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1:
                raise EncoderError(f"egemaps: expected a mono 1-D waveform, got shape {wave.shape}")
            wave = quiet_as_silence(wave)  # the one silence rule of every speech encoder
            if len(wave) < min_samples:
                wave = np.pad(wave, (0, min_samples - len(wave)))
            with warnings.catch_warnings():
                # "Segment too short, filling with NaN" cannot happen after padding; any
                # other NaN is zeroed below.
                warnings.simplefilter("ignore", UserWarning)
                values = self._smile.process_signal(wave, self.sample_rate_hz).to_numpy()
            out[i] = values.reshape(-1)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def build(options: dict[str, str]) -> EgemapsEncoder:
    """Registry factory: ``egemaps?feature_set=GeMAPSv01b``."""
    check_options(options, ("feature_set",), "egemaps")
    return EgemapsEncoder(**options)
