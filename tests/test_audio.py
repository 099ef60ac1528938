"""Audio loading: mono mix-down, resampling, long-clip policies, and clear errors."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from emofuse.audio import (
    AudioError,
    audio_info,
    decode_audio_bytes,
    load_audio,
    split_into_chunks,
)

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"


def tone(seconds: float, rate: int, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def stereo_44k(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """1 s at 44.1 kHz: a tone on the left, silence on the right."""
    left = tone(1.0, 44_100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44_100, subtype="FLOAT")
    return path, left


def test_stereo_44k_becomes_16k_mono_of_the_right_length(stereo_44k):
    path, left = stereo_44k
    wave = load_audio(path, 16_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == 16_000
    # Mono is the channel mean: half the left tone, resampled.
    expected = soxr.resample(left / 2, 44_100, 16_000, quality="HQ")
    np.testing.assert_allclose(wave, expected, atol=1e-6)
    assert 0.24 < np.abs(wave).max() < 0.26


def test_audio_info_reads_the_header(stereo_44k):
    path, _ = stereo_44k
    duration_s, rate, channels = audio_info(path)
    assert (rate, channels) == (44_100, 2)
    assert duration_s == pytest.approx(1.0)


def test_same_rate_is_returned_unchanged(tmp_path):
    wave = tone(0.5, 16_000)
    sf.write(tmp_path / "a.wav", wave, 16_000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav", 16_000), wave)


def test_crop_keeps_the_start_and_decodes_only_those_frames(stereo_44k, monkeypatch):
    path, _ = stereo_44k
    requested: list[int] = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    cropped = load_audio(path, 16_000, max_duration_s=0.25)
    assert requested == [math.ceil(0.25 * 44_100)]
    assert len(cropped) == 4_000
    full = load_audio(path, 16_000)
    # Away from the cut the resampled prefix is the same signal.
    np.testing.assert_allclose(cropped[:3_500], full[:3_500], atol=1e-4)


def test_long_policy_error_and_chunk(stereo_44k):
    path, _ = stereo_44k
    with pytest.raises(AudioError, match=r"stereo\.wav: too long \(1\.0 s > 0\.5 s"):
        load_audio(path, 16_000, max_duration_s=0.5, long_policy="error")
    assert len(load_audio(path, 16_000, max_duration_s=0.5, long_policy="chunk")) == 16_000
    # Short enough: no policy applies.
    assert len(load_audio(path, 16_000, max_duration_s=2.0, long_policy="error")) == 16_000
    with pytest.raises(ValueError, match="long_policy"):
        load_audio(path, 16_000, long_policy="trim")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav", 16_000)
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path, 16_000)
    with pytest.raises(AudioError, match="no such file"):
        audio_info(tmp_path / "nope.wav")


def test_corrupt_and_empty_files(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk" * 10)
    with pytest.raises(
        AudioError, match=r"corrupt\.wav: unreadable audio \(corrupt or unsupported"
    ):
        load_audio(corrupt, 16_000)
    with pytest.raises(AudioError, match=r"corrupt\.wav: unreadable"):
        audio_info(corrupt)

    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero\.wav: empty file \(0 bytes\)"):
        load_audio(zero_bytes, 16_000)

    no_frames = tmp_path / "noframes.wav"
    sf.write(no_frames, np.zeros((0, 1), dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match=r"noframes\.wav: empty audio \(0 frames\)"):
        load_audio(no_frames, 16_000)


def test_too_short_and_non_finite(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, tone(0.01, 16_000), 16_000)
    with pytest.raises(AudioError, match=r"short\.wav: too short \(0\.010 s < 0\.05 s"):
        load_audio(short, 16_000)
    assert len(load_audio(short, 16_000, min_duration_s=0.0)) == 160

    bad = tone(0.5, 16_000)
    bad[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, bad, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN"):
        load_audio(path, 16_000)


def test_silence_is_not_an_error(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(8_000, dtype=np.float32), 16_000)
    wave = load_audio(tmp_path / "silent.wav", 16_000)
    assert len(wave) == 8_000 and not wave.any()


def test_decode_bytes_matches_load_and_names_the_upload(stereo_44k):
    path, _ = stereo_44k
    data = path.read_bytes()
    np.testing.assert_array_equal(decode_audio_bytes(data, 16_000), load_audio(path, 16_000))
    assert len(decode_audio_bytes(data, 16_000, max_duration_s=0.5)) == 8_000
    with pytest.raises(AudioError, match=r"^upload: empty file"):
        decode_audio_bytes(b"", 16_000)
    with pytest.raises(AudioError, match=r"^clip\.mp3: unreadable audio"):
        decode_audio_bytes(b"\x00\x01garbage" * 50, 16_000, name="clip.mp3")
    with pytest.raises(AudioError, match=r"^up: too long"):
        decode_audio_bytes(data, 16_000, name="up", max_duration_s=0.5, long_policy="error")

    buffer = io.BytesIO()
    sf.write(buffer, tone(0.02, 16_000), 16_000, format="WAV")
    with pytest.raises(AudioError, match=r"^upload: too short"):
        decode_audio_bytes(buffer.getvalue(), 16_000)


def test_truncated_file_reads_what_is_there(stereo_44k):
    path, _ = stereo_44k
    data = path.read_bytes()
    # The header still claims 1 s; only about a third of the samples follow it.
    wave = decode_audio_bytes(data[: len(data) // 3], 16_000)
    assert 0.25 < len(wave) / 16_000 < 0.4


def test_split_into_chunks():
    rate = 100
    wave = np.arange(1_050, dtype=np.float32)  # 10.5 s
    chunks = split_into_chunks(wave, rate, 3.0)
    # 3 + 3 + 3 and a 1.5 s tail, which stays on its own because it is >= min_last_s (1 s).
    assert [len(c) for c in chunks] == [300, 300, 300, 150]
    np.testing.assert_array_equal(np.concatenate(chunks), wave)

    merged = split_into_chunks(wave, rate, 3.0, min_last_s=2.0)
    assert [len(c) for c in merged] == [300, 300, 450]
    np.testing.assert_array_equal(np.concatenate(merged), wave)

    assert [len(c) for c in split_into_chunks(wave[:250], rate, 3.0)] == [250]
    with pytest.raises(ValueError):
        split_into_chunks(wave, rate, 0)


def test_real_emodb_clip():
    if not EMODB.is_dir():
        pytest.skip(f"{EMODB} absent: real-speech checks need ../shared/data/emodb")
    path = sorted((EMODB / "wav").glob("*.wav"))[0]
    duration_s, rate, channels = audio_info(path)
    wave = load_audio(path, 16_000)
    assert (rate, channels) == (16_000, 1)
    assert len(wave) == round(duration_s * 16_000)
    assert wave.dtype == np.float32 and 0.01 < np.abs(wave).max() <= 1.0
    # Resampling real speech to 8 kHz halves the sample count.
    assert abs(len(load_audio(path, 8_000)) - len(wave) / 2) <= 1
