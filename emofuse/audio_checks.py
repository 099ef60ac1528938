"""The audio policies every path shares: how long a clip may be, and what the encoders do
with (effectively) silent clips.

Length
    :data:`MAX_CLIP_S` is the one length limit of every command (``extract``, training,
    grids, ``predict``, ``evaluate``; ``serve`` may only lower it). It is checked from the
    file header, before any sample is decoded: a longer clip is refused (in the feature
    store, a recorded failure naming the file), so a stray hours-long recording is never
    read into memory.

Silence
    The rule is :func:`emofuse.audio.is_silent` (no sample reaches
    :data:`emofuse.audio.SILENCE_PEAK`): the same rule decides when ``predict`` warns that a
    clip is silence and when an encoder treats it as silence. Float WAVs can hold samples
    far below any real signal (1e-30, 1e-38): they pass an "is it all zeros?" test, and any
    loudness normalisation then divides by a mean square that underflowed to 0
    (resemblyzer's volume normalisation crashed with ``librosa.ParameterError``). Every
    speech encoder passes its waveforms through :func:`quiet_as_silence`, so such a clip
    is encoded exactly as digital silence: one defined vector, never a crash, never noise
    amplified a billionfold.
"""

from __future__ import annotations

import numpy as np

#: The longest clip any command reads, in seconds (checked from the header).
MAX_CLIP_S = 600.0


def quiet_as_silence(wave: np.ndarray) -> np.ndarray:
    """``wave`` as float32, or zeros of its length when :func:`emofuse.audio.is_silent`
    says it is silence, so an encoder treats a 1e-30 clip exactly as digital silence."""
    from emofuse.audio import is_silent  # audio.py may import this module

    wave = np.asarray(wave, dtype=np.float32)
    return np.zeros_like(wave) if is_silent(wave) else wave
