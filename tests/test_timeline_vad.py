"""The voice-activity scanner: scores independent of the block size; torch's threads kept."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from emofuse.timeline.vad import FRAME_SAMPLES, VadScanner


def feed_in_blocks(wave: np.ndarray, size: int):
    scanner = VadScanner()
    for start in range(0, len(wave), size):
        scanner.feed(wave[start : start + size])
    return scanner.finish()


def test_scores_do_not_depend_on_the_block_size():
    rng = np.random.default_rng(0)
    t = np.arange(16_000 * 6) / 16_000
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype("f4")
    wave += (0.01 * rng.standard_normal(len(wave))).astype("f4")
    whole = feed_in_blocks(wave, len(wave))
    pieces = feed_in_blocks(wave, 7_777)  # not a multiple of a frame
    assert len(whole.speech_prob) == int(np.ceil(len(wave) / FRAME_SAMPLES))
    np.testing.assert_allclose(pieces.speech_prob, whole.speech_prob, atol=1e-6)
    np.testing.assert_allclose(pieces.level_db, whole.level_db, atol=1e-4)
    assert pieces.duration_s == len(wave) / 16_000


def test_loading_the_detector_keeps_torchs_thread_count():
    # silero_vad sets torch to one thread when imported; the speech encoders need theirs.
    code = (
        "import torch; torch.set_num_threads(2); "
        "from emofuse.timeline.vad import load_vad_model; load_vad_model(); "
        "print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"
