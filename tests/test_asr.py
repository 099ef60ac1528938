"""Offline Korean speech recognition (Vosk) on a real spoken clip made by espeak-ng."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from support.requirements import need_espeak, need_vosk

from emofuse import asr
from emofuse.asr import AsrUnavailableError, VoskTranscriber, build_asr, to_pcm16


def test_build_asr_choices():
    assert build_asr("none") is None and build_asr(None) is None and build_asr("") is None
    with pytest.raises(ValueError, match="vosk"):
        build_asr("whisper")


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vosk", None)  # makes `import vosk` fail
    with pytest.raises(AsrUnavailableError, match=r"pip install 'emofuse\[asr\]'"):
        VoskTranscriber()


def test_bad_model_dir_is_named(tmp_path):
    need_vosk(model=False)
    with pytest.raises(AsrUnavailableError, match="no such Vosk model directory"):
        VoskTranscriber(tmp_path / "nothing-here")


def test_pcm_conversion_resamples_and_clips():
    wave = np.concatenate([np.full(800, 2.0), np.full(800, -0.5)]).astype(np.float32)
    pcm = np.frombuffer(to_pcm16(wave, 8_000), dtype="<i2")
    assert len(pcm) == 3200  # 8 kHz -> 16 kHz
    assert pcm.max() == 32767  # clipped, not wrapped round
    assert np.frombuffer(to_pcm16(wave, 16_000), dtype="<i2")[-1] == -16383


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory):
    espeak = need_espeak()
    path = tmp_path_factory.mktemp("speech") / "spoken.wav"
    subprocess.run(
        [espeak, "-v", "ko", "-s", "140", "-w", str(path), "오늘 정말 기분이 좋아요"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    from emofuse.audio import load_audio

    return load_audio(path, 22_050), 22_050


@pytest.mark.slow
def test_transcribes_real_speech_and_loads_once(spoken_clip):
    need_vosk()
    asr._load_vosk_model.cache_clear()
    first = build_asr("vosk")
    wave, rate = spoken_clip
    text = first.transcribe(wave, rate)
    assert isinstance(text, str)
    second = VoskTranscriber()
    assert isinstance(second.transcribe(wave[: rate // 2], rate), str)
    assert asr._load_vosk_model.cache_info().misses == 1  # one model load for both
    assert first.transcribe(np.zeros(16_000, dtype=np.float32), 16_000) == ""


def test_import_vosk_is_public_and_the_word_timer_uses_the_same_one(monkeypatch):
    from emofuse.timeline import asr_words

    assert asr_words.import_vosk is asr.import_vosk  # one install hint, not a private reach-in
    monkeypatch.setitem(sys.modules, "vosk", None)
    with pytest.raises(AsrUnavailableError, match=r"emofuse\[asr\]"):
        asr.import_vosk()
