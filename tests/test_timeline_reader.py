"""Reading a recording in blocks: bounded reads, the same samples as a whole read, spans."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from support.read_spy import spy_on_reads

from emofuse.audio import AudioError, load_audio
from emofuse.timeline.reader import iter_blocks, iter_spans


def write_tone(path, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([left, -0.5 * left][:channels], axis=1).astype(np.float32)
    sf.write(path, data, rate)
    return data


def test_no_read_asks_soundfile_for_more_than_a_block(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    write_tone(path, 20.0, 8000)
    asked = spy_on_reads(monkeypatch)
    blocks = list(iter_blocks(path, block_s=2.0))
    assert asked and max(asked) == 2 * 8000 and -1 not in asked
    assert max(len(b) for b in blocks) <= 1.1 * 2 * 16_000  # the resampler flushes at the end
    assert sum(len(b) for b in blocks) == pytest.approx(20 * 16_000, abs=2)


def test_blocks_join_to_what_a_whole_read_gives(tmp_path):
    path = tmp_path / "a.wav"
    write_tone(path, 5.3, 16_000)
    joined = np.concatenate(list(iter_blocks(path, block_s=0.7)))
    np.testing.assert_array_equal(joined, load_audio(path, 16_000))


def test_streamed_resampling_matches_a_whole_resample(tmp_path):
    path = tmp_path / "b.wav"
    write_tone(path, 4.0, 44_100)
    joined = np.concatenate(list(iter_blocks(path, block_s=0.5)))
    whole = load_audio(path, 16_000)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    assert np.max(np.abs(joined[:n] - whole[:n])) < 1e-3


def test_one_channel_or_the_mix(tmp_path):
    path = tmp_path / "stereo.wav"
    data = write_tone(path, 1.0, 16_000, channels=2)
    right = np.concatenate(list(iter_blocks(path, channel=1)))
    mix = np.concatenate(list(iter_blocks(path)))
    np.testing.assert_allclose(right, data[:, 1], atol=1e-4)
    np.testing.assert_allclose(mix, data.mean(axis=1), atol=1e-4)
    with pytest.raises(AudioError, match="no channel 2"):
        list(iter_blocks(path, channel=2))


def test_spans_are_cut_across_block_boundaries():
    blocks = [np.arange(i, i + 10, dtype=np.float32) for i in range(0, 50, 10)]
    spans = [(0.5, 1.2), (1.8, 4.1), (4.9, 6.0)]  # at 10 samples per second
    got = dict(iter_spans(iter(blocks), spans, sample_rate_hz=10))
    np.testing.assert_array_equal(got[0], np.arange(5, 12))
    np.testing.assert_array_equal(got[1], np.arange(18, 41))
    np.testing.assert_array_equal(got[2], np.arange(49, 50))  # the file ended at 5 s


def test_unreadable_and_missing_files_are_named(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.wav: unreadable"):
        list(iter_blocks(junk))
    with pytest.raises(AudioError, match="nope.wav: no such file"):
        list(iter_blocks(tmp_path / "nope.wav"))
