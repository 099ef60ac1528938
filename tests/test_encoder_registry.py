"""build_encoder: names, options, concatenation, modality checks, the Hugging Face fallback."""

from __future__ import annotations

import numpy as np
import pytest

from emofuse.encoders import registry
from emofuse.encoders.base import ConcatEncoder, Encoder, EncoderError
from emofuse.encoders.options import FALSE_WORDS, TRUE_WORDS
from emofuse.encoders.registry import (
    OFFLINE_SPEECH,
    OFFLINE_TEXT,
    OFFLINE_TEXT_UNSUPERVISED,
    build_encoder,
)


def synthetic_speech() -> list[np.ndarray]:
    """Two voiced-like clips (harmonic tones with noise), 1.2 s and 2 s at 16 kHz."""
    rng = np.random.default_rng(0)
    clips = []
    for seconds, f0 in [(1.2, 140.0), (2.0, 220.0)]:
        t = np.arange(int(seconds * 16_000)) / 16_000
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        clips.append((0.1 * wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
    return clips


def test_offline_speech_default_is_a_344_dim_concatenation():
    encoder = build_encoder(OFFLINE_SPEECH, "speech")
    assert isinstance(encoder, ConcatEncoder)
    assert encoder.dim == 344 and encoder.modality == "speech" and encoder.sample_rate_hz == 16_000
    assert [p.name for p in encoder.parts()] == ["egemaps", "resemblyzer"]
    assert encoder.spec == "egemaps+resemblyzer"
    waves = synthetic_speech()
    x = encoder.encode(waves)
    assert x.shape == (2, 344) and x.dtype == np.float32
    egemaps, voice = encoder.parts()
    np.testing.assert_array_equal(x[:, :88], egemaps.encode(waves))
    np.testing.assert_allclose(x[:, 88:], voice.encode(waves), atol=1e-6)
    # The spec rebuilds the same thing; a part's setting changes the whole fingerprint.
    assert build_encoder(encoder.spec, "speech").fingerprint() == encoder.fingerprint()
    changed = build_encoder("egemaps+resemblyzer?trim_silence=0", "speech")
    assert changed.fingerprint() != encoder.fingerprint()
    assert build_encoder("resemblyzer+egemaps", "speech").fingerprint() != encoder.fingerprint()


def test_offline_text_default():
    encoder = build_encoder(OFFLINE_TEXT, "text")
    assert encoder.name == "kiwi-sparse" and encoder.modality == "text" and encoder.needs_fit
    assert encoder.needs_labels  # fitted on the training part with its labels
    unsupervised = build_encoder(OFFLINE_TEXT_UNSUPERVISED, "text")
    assert unsupervised.needs_fit and not unsupervised.needs_labels


def test_text_concatenation_fits_its_parts():
    encoder = build_encoder(
        "kiwi-tfidf?dim=4&char_ngrams=0+kiwi-tfidf?dim=3&morph_ngrams=0", "text"
    )
    assert isinstance(encoder, ConcatEncoder) and encoder.needs_fit and not encoder.is_fitted
    texts = [
        "오늘 정말 기분이 좋아요",
        "너무 슬퍼서 눈물이 나요",
        "왜 이렇게 화가 나지",
        "그냥 그래요",
        "무서워요 정말",
    ]
    encoder.fit(texts)
    assert encoder.is_fitted and encoder.dim == 7
    assert encoder.encode(texts[:2]).shape == (2, 7)


def test_wrong_modality_and_bad_specs():
    with pytest.raises(EncoderError, match="'kiwi-tfidf' is a text encoder, not a speech encoder"):
        build_encoder("kiwi-tfidf", "speech")
    with pytest.raises(EncoderError, match="'egemaps' is a speech encoder, not a text encoder"):
        build_encoder("egemaps", "text")
    with pytest.raises(EncoderError, match="modality must be"):
        build_encoder("egemaps", "video")
    with pytest.raises(EncoderError, match="empty speech encoder spec"):
        build_encoder(" + ", "speech")
    with pytest.raises(EncoderError, match="unknown resemblyzer encoder option"):
        build_encoder("egemaps+resemblyzer?layer=3", "speech")


@pytest.mark.parametrize(
    ("word", "trimmed"),
    [(w, True) for w in TRUE_WORDS + ("TRUE", "Yes")]
    + [(w, False) for w in FALSE_WORDS + ("Off",)],
)
def test_every_encoder_reads_the_same_true_false_words(word, trimmed):
    encoder = build_encoder(f"resemblyzer?trim_silence={word}", "speech")
    assert encoder.trim_silence is trimmed
    assert encoder.spec == ("resemblyzer" if trimmed else "resemblyzer?trim_silence=0")


@pytest.mark.parametrize(
    ("spec", "modality", "kind"),
    [
        ("egemaps?bogus=1", "speech", "egemaps"),
        ("resemblyzer?bogus=1", "speech", "resemblyzer"),
        ("kiwi-tfidf?bogus=1", "text", "kiwi-tfidf"),
        ("some-org/some-speech-model?bogus=1", "speech", "speech"),
        ("some-org/some-text-model?bogus=1", "text", "text"),
    ],
)
def test_every_encoder_refuses_unknown_options_the_same_way(spec, modality, kind):
    # Checked before any model is looked for: no hub access is needed to be told.
    with pytest.raises(
        EncoderError, match=rf"^unknown {kind} encoder option\(s\) 'bogus'; known: "
    ):
        build_encoder(spec, modality)


def test_unknown_names_go_to_hugging_face(monkeypatch):
    calls: list[tuple[str, dict[str, str]]] = []
    real_load = registry._load

    class Fake(Encoder):
        modality = "speech"
        name = "fake-hf"
        spec = "fake"
        dim = 3

        def config(self):
            return {}

        def encode(self, batch):
            return np.zeros((len(batch), 3), dtype=np.float32)

    def fake_load(target: str):
        if target in registry._HF.values():
            return lambda options: calls.append((target, options)) or Fake()
        return real_load(target)

    monkeypatch.setattr(registry, "_load", fake_load)
    build_encoder("facebook/wav2vec2-large-robust?layer=mean", "speech")
    build_encoder("hf:/models/my-wav2vec2", "speech")
    build_encoder("beomi/KcELECTRA-base-v2022", "text")
    assert calls == [
        (registry._HF["speech"], {"model": "facebook/wav2vec2-large-robust", "layer": "mean"}),
        (registry._HF["speech"], {"model": "/models/my-wav2vec2"}),
        (registry._HF["text"], {"model": "beomi/KcELECTRA-base-v2022"}),
    ]
    # A registered name never reaches the Hugging Face factory.
    mixed = build_encoder("egemaps+some/model", "speech")
    assert [p.name for p in mixed.parts()] == ["egemaps", "fake-hf"] and mixed.dim == 91
    assert len(calls) == 4
