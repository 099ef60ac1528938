"""Audio loading: mono mix-down, resampling, long-clip policies, and clear errors."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from support.read_spy import spy_on_reads
from support.requirements import need_shared

from emofuse.audio import (
    AudioEmpty,
    AudioError,
    AudioInvalidSamples,
    AudioNotFound,
    AudioTooLong,
    AudioTooShort,
    AudioUnreadable,
    AudioUnsupportedFormat,
    audio_info,
    decode_audio_bytes,
    load_audio,
    load_waveform,
)


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
    requested = spy_on_reads(monkeypatch)
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
    with pytest.raises(AudioUnreadable, match=r"corrupt\.wav: unreadable audio \(corrupt") as e:
        load_audio(corrupt, 16_000)
    assert not isinstance(e.value, AudioUnsupportedFormat)
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


def test_real_emodb_clip():
    emodb = need_shared("emodb")
    path = sorted((emodb / "wav").glob("*.wav"))[0]
    duration_s, rate, channels = audio_info(path)
    wave = load_audio(path, 16_000)
    assert (rate, channels) == (16_000, 1)
    assert len(wave) == round(duration_s * 16_000)
    assert wave.dtype == np.float32 and 0.01 < np.abs(wave).max() <= 1.0
    # Resampling real speech to 8 kHz halves the sample count.
    assert abs(len(load_audio(path, 8_000)) - len(wave) / 2) <= 1


# ---------------------------------------------------------------- one loader, typed errors


def test_each_problem_has_its_own_class(tmp_path):
    """The class, not the message, says what went wrong (the service maps it to a status)."""
    wav = io.BytesIO()
    sf.write(wav, tone(1.0, 16_000), 16_000, format="WAV")
    cases = [
        (b"this is plain text, not audio" * 10, AudioUnsupportedFormat),
        (bytes(range(256)) * 40, AudioUnsupportedFormat),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage", AudioUnreadable),
        (b"RIFF\x00\x00not really a wav file", AudioUnreadable),
        (b"", AudioEmpty),
    ]
    for data, kind in cases:
        with pytest.raises(kind) as caught:
            load_waveform(data, 16_000, name="up.wav")
        assert type(caught.value) is kind, (data[:12], type(caught.value))
        assert str(caught.value).startswith("up.wav: ")
    with pytest.raises(AudioTooLong):
        load_waveform(wav.getvalue(), 16_000, max_duration_s=0.5, long_policy="error")
    with pytest.raises(AudioNotFound):
        load_waveform(tmp_path / "missing.wav", 16_000)
    assert issubclass(AudioEmpty, AudioTooShort) and issubclass(AudioTooShort, AudioError)


def test_one_loader_gives_the_same_waveform_from_a_path_bytes_and_an_array(stereo_44k):
    path, _ = stereo_44k
    from_path = load_waveform(path, 16_000)
    from_bytes = load_waveform(path.read_bytes(), 16_000)
    frames, rate = sf.read(path, dtype="float32")
    from_array = load_waveform((frames, rate), 16_000)
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_allclose(from_array, from_path, atol=1e-6)


def test_channel_first_arrays_are_mixed_down_over_the_channel_axis(stereo_44k):
    """A (2, n) array used to be averaged over the samples: a 2-sample 'clip'."""
    path, _ = stereo_44k
    frames, rate = sf.read(path, dtype="float32")  # (n, 2)
    channels_last = load_waveform((frames, rate), 16_000)
    channels_first = load_waveform((frames.T.copy(), rate), 16_000)
    assert len(channels_first) == 16_000
    np.testing.assert_array_equal(channels_first, channels_last)


def test_arrays_get_the_same_checks_as_files():
    with pytest.raises(AudioTooShort, match=r"^waveform: too short"):
        load_waveform((np.zeros(10, dtype=np.float32), 16_000), 16_000)
    with pytest.raises(AudioTooShort, match=r"^clip 3: too short"):
        load_waveform((np.zeros((2, 40), dtype=np.float32), 16_000), 16_000, name="clip 3")
    with pytest.raises(AudioInvalidSamples, match="cannot tell channels"):
        load_waveform((np.zeros((3, 3), dtype=np.float32), 16_000), 16_000)
    with pytest.raises(AudioInvalidSamples, match="cannot tell channels"):
        load_waveform((np.zeros((100, 20_000), dtype=np.float32), 16_000), 16_000)
    with pytest.raises(AudioInvalidSamples, match="NaN"):
        load_waveform((np.full(1_000, np.nan, dtype=np.float32), 16_000), 16_000)
    with pytest.raises(AudioInvalidSamples, match="sample rate 0"):
        load_waveform((np.zeros(1_000, dtype=np.float32), 0), 16_000)
    with pytest.raises(AudioTooLong, match="too long"):
        load_waveform((tone(1.0, 16_000), 16_000), 16_000, max_duration_s=0.5, long_policy="error")
    cropped = load_waveform((tone(1.0, 16_000), 16_000), 16_000, max_duration_s=0.5)
    assert len(cropped) == 8_000
    assert len(load_waveform((tone(1.0, 8_000), 8_000), 16_000)) == 16_000


def test_rates_below_audio_and_digital_silence(tmp_path):
    from emofuse.audio import is_silent

    path = tmp_path / "tiny.wav"
    sf.write(path, np.array([0.1, -0.1], dtype=np.float32), 1)
    with pytest.raises(AudioInvalidSamples, match=r"tiny\.wav: sample rate 1 Hz"):
        load_audio(path, 16_000)  # 2 samples at 1 Hz passed the 0.05 s minimum
    with pytest.raises(AudioInvalidSamples, match="sample rate 10 Hz"):
        load_waveform((np.zeros(100, dtype=np.float32), 10), 16_000)
    assert is_silent(np.zeros(16_000, dtype=np.float32))
    assert is_silent(np.full(100, 1e-6, dtype=np.float32))
    assert not is_silent(tone(0.1, 16_000))
