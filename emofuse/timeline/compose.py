"""A long recording made of labelled clips joined by pauses of low noise, with its truth
table: for tests, benchmarks and demos of the timeline. Written clip by clip, so a long
recording never sits in memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from emofuse.audio import load_audio
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ


def compose_recording(
    clips: Sequence[str | Path | np.ndarray],
    labels: Sequence[str],
    out_path: str | Path,
    *,
    gap_s: tuple[float, float] = (1.2, 2.0),
    noise_db: float = -60.0,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    seed: int = 0,
    subtype: str | None = None,
    repeat_until_s: float | None = None,
) -> pd.DataFrame:
    """Write ``clips`` (paths or waveforms at ``sample_rate_hz``) one after another with a
    random pause in ``gap_s`` before each, under noise at ``noise_db`` dBFS RMS; returns
    ``clip, label, start_s, end_s`` per clip. ``repeat_until_s`` cycles the clips until the
    recording is that long."""
    if len(clips) != len(labels) or not clips:
        raise ValueError(f"{len(clips)} clips and {len(labels)} labels: need as many, not none")
    rng = np.random.default_rng(seed)
    noise = 10 ** (noise_db / 20)
    rows = []
    position = 0
    out_path = Path(out_path)
    with sf.SoundFile(
        str(out_path), "w", samplerate=sample_rate_hz, channels=1, subtype=subtype
    ) as out:
        i = 0
        while True:
            clip = clips[i % len(clips)]
            wave = (
                load_audio(clip, sample_rate_hz)
                if isinstance(clip, str | Path)
                else np.asarray(clip, dtype=np.float32)
            )
            gap = int(rng.uniform(*gap_s) * sample_rate_hz)
            out.write((noise * rng.standard_normal(gap)).astype(np.float32))
            position += gap
            noisy = wave + noise * rng.standard_normal(len(wave)).astype(np.float32)
            out.write(np.clip(noisy, -1, 1).astype(np.float32))
            rows.append(
                {
                    "clip": str(clip) if isinstance(clip, str | Path) else f"clip {i}",
                    "label": labels[i % len(labels)],
                    "start_s": position / sample_rate_hz,
                    "end_s": (position + len(wave)) / sample_rate_hz,
                }
            )
            position += len(wave)
            i += 1
            done = (
                i >= len(clips)
                if repeat_until_s is None
                else position >= repeat_until_s * sample_rate_hz
            )
            if done:
                break
        tail = int(gap_s[0] * sample_rate_hz)
        out.write((noise * rng.standard_normal(tail)).astype(np.float32))
    return pd.DataFrame(rows)
