"""The offline encoders: eGeMAPS (openSMILE), the resemblyzer voice encoder, Kiwi TF-IDF."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from support.requirements import need_shared

from emofuse.audio import load_audio
from emofuse.encoders.base import EncoderError
from emofuse.encoders.registry import build_encoder


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    """Six real clips: two speakers x three emotions."""
    names = ["03a01Fa", "03a01Nc", "03a01Wa", "08a01Fd", "08a01Na", "08a01Wa"]
    paths = [need_shared("emodb", "wav", f"{n}.wav") for n in names]
    return [load_audio(p, 16_000) for p in paths]


@pytest.fixture(scope="module")
def kote() -> list[str]:
    with need_shared("kote", "test.tsv").open(encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t")[1] for line in handle][:600]


def odd_waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        np.zeros(16_000, dtype=np.float32),  # digital silence
        np.zeros(0, dtype=np.float32),  # nothing at all
        (rng.standard_normal(480) * 0.1).astype(np.float32),  # 30 ms
        (rng.standard_normal(16_000) * 1e-3).astype(np.float32),  # faint noise, no voice
    ]


# -- eGeMAPS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def egemaps():
    return build_encoder("egemaps", "speech")


def test_egemaps_shape_dtype_determinism(egemaps, speech):
    assert egemaps.dim == 88 and egemaps.sample_rate_hz == 16_000 and egemaps.spec == "egemaps"
    x = egemaps.encode(speech)
    assert x.shape == (6, 88) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, egemaps.encode(speech))
    # One at a time gives the same rows as a batch.
    np.testing.assert_array_equal(egemaps.encode(speech[2:3])[0], x[2])
    # Different clips differ.
    assert len({row.tobytes() for row in x}) == 6


def test_egemaps_short_and_silent_clips_are_defined(egemaps):
    odd = odd_waves()
    x = egemaps.encode(odd)
    assert x.shape == (4, 88) and np.isfinite(x).all()
    # A clip shorter than openSMILE's window is the clip padded with silence to 0.1 s.
    padded = np.pad(odd[2], (0, 1_600 - len(odd[2])))
    np.testing.assert_array_equal(x[2], egemaps.encode([padded])[0])
    assert np.abs(x[2]).sum() > 0
    with pytest.raises(EncoderError, match="mono 1-D"):
        egemaps.encode([np.zeros((2, 16_000), dtype=np.float32)])


def test_egemaps_config_and_fingerprint(egemaps):
    import opensmile

    config = egemaps.config()
    assert config["feature_set"] == "eGeMAPSv02" and config["feature_level"] == "Functionals"
    assert config["opensmile"] == opensmile.__version__
    other = build_encoder("egemaps?feature_set=GeMAPSv01b", "speech")
    assert other.dim == 62 and other.spec == "egemaps?feature_set=GeMAPSv01b"
    assert other.fingerprint() != egemaps.fingerprint()
    assert build_encoder("egemaps", "speech").fingerprint() == egemaps.fingerprint()
    with pytest.raises(EncoderError, match="unknown egemaps feature_set"):
        build_encoder("egemaps?feature_set=emobase", "speech")
    with pytest.raises(EncoderError, match=r"unknown egemaps encoder option\(s\) 'level'"):
        build_encoder("egemaps?level=LowLevelDescriptors", "speech")


# -- resemblyzer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voice():
    return build_encoder("resemblyzer", "speech")


def test_resemblyzer_matches_embed_utterance(voice, speech):
    from emofuse.encoders.voice_encoder import import_resemblyzer, shared_model, torch_threads

    x = voice.encode(speech)
    assert x.shape == (6, 256) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # The batched path gives resemblyzer's own per-utterance result.
    resemblyzer = import_resemblyzer()
    model = shared_model()
    with torch_threads(1):
        reference = np.stack([model.embed_utterance(resemblyzer.preprocess_wav(w)) for w in speech])
    np.testing.assert_allclose(x, reference, atol=1e-5)
    np.testing.assert_allclose(voice.encode(speech[::-1])[::-1], x, atol=1e-6)


def test_resemblyzer_short_and_silent_clips_give_unit_vectors(voice):
    x = voice.encode(odd_waves())
    assert x.shape == (4, 256) and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_resemblyzer_preprocess_falls_back_when_vad_finds_no_voice(speech):
    from emofuse.encoders.voice_encoder import import_resemblyzer, preprocess

    resemblyzer = import_resemblyzer()
    noise = odd_waves()[3]
    # resemblyzer's own preprocessing throws the whole clip away ...
    assert len(resemblyzer.preprocess_wav(noise)) == 0
    # ... ours keeps it (gain applied, nothing trimmed).
    kept = preprocess(noise)
    assert len(kept) == len(noise) and np.sqrt(np.mean(kept**2)) > 10 * np.sqrt(np.mean(noise**2))
    silence = preprocess(np.zeros(8_000, dtype=np.float32))
    assert len(silence) == 8_000 and not silence.any()
    # On real speech it is resemblyzer's preprocessing exactly.
    np.testing.assert_array_equal(preprocess(speech[0]), resemblyzer.preprocess_wav(speech[0]))
    assert len(preprocess(speech[0], trim_silence=False)) == len(speech[0])


def test_resemblyzer_config_fingerprint_and_shared_model(voice):
    from emofuse.encoders.voice_encoder import import_resemblyzer, shared_model

    weights = Path(import_resemblyzer().__file__).resolve().parent / "pretrained.pt"
    assert voice.config()["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    untrimmed = build_encoder("resemblyzer?trim_silence=0", "speech")
    assert untrimmed.spec == "resemblyzer?trim_silence=0"
    assert untrimmed.fingerprint() != voice.fingerprint()
    # Threads change speed, not output: same fingerprint.
    assert build_encoder("resemblyzer?threads=2", "speech").fingerprint() == voice.fingerprint()
    assert shared_model() is shared_model()
    with pytest.raises(EncoderError, match="trim_silence"):
        build_encoder("resemblyzer?trim_silence=maybe", "speech")
    with pytest.raises(EncoderError, match="threads"):
        build_encoder("resemblyzer?threads=0", "speech")


# -- Kiwi TF-IDF ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(kote):
    encoder = build_encoder("kiwi-tfidf?dim=32", "text")
    encoder.fit(kote[:200])
    return encoder


def test_kiwi_tfidf_needs_fit_first(kote):
    encoder = build_encoder("kiwi-tfidf", "text")
    assert encoder.needs_fit and not encoder.is_fitted
    with pytest.raises(EncoderError, match=r"not fitted: call fit\(training_texts\)"):
        encoder.encode(kote[:2])
    with pytest.raises(EncoderError, match="dim is known only after fitting"):
        _ = encoder.dim
    assert "unfitted" in repr(encoder)
    with pytest.raises(EncoderError, match="at least 2 distinct non-empty texts"):
        encoder.fit(["같은 문장", "같은 문장 ", ""])


def test_kiwi_tfidf_vectors(fitted, kote):
    assert fitted.is_fitted and fitted.dim == 32
    x = fitted.encode(kote[400:450])
    assert x.shape == (50, 32) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x, fitted.encode(kote[400:450]))
    np.testing.assert_array_equal(fitted.encode(kote[410:411])[0], x[10])
    # Empty text is the zero vector.
    empty = fitted.encode(["", "  \n "])
    assert empty.shape == (2, 32) and not empty.any()
    assert fitted.encode([]).shape == (0, 32)
    # A near-copy is closer than an unrelated comment.
    text = kote[0]
    a, b, c = fitted.encode([text, text + " ㅋㅋ", kote[1]])
    assert a @ b > a @ c
    with pytest.raises(EncoderError, match="expected text"):
        fitted.encode([None])  # type: ignore[list-item]


def test_kiwi_tfidf_fit_ignores_order_and_duplicates(fitted, kote):
    texts = kote[:200] + kote[:30]
    random.Random(1).shuffle(texts)
    again = build_encoder("kiwi-tfidf?dim=32", "text")
    again.fit(texts)
    assert again.fingerprint() == fitted.fingerprint()
    np.testing.assert_array_equal(again.encode(kote[400:420]), fitted.encode(kote[400:420]))


def test_kiwi_tfidf_fingerprints(fitted, kote):
    unfitted = build_encoder("kiwi-tfidf?dim=32", "text")
    assert unfitted.state_fingerprint() == "" and fitted.state_fingerprint() != ""
    assert unfitted.fingerprint() != fitted.fingerprint()
    other_texts = build_encoder("kiwi-tfidf?dim=32", "text")
    other_texts.fit(kote[50:250])
    assert other_texts.fingerprint() != fitted.fingerprint()
    # A setting change is a new fingerprint before and after fitting.
    no_chars = build_encoder("kiwi-tfidf?dim=32&char_ngrams=0", "text")
    assert no_chars.fingerprint() != unfitted.fingerprint()
    no_chars.fit(kote[:200])
    assert no_chars.fingerprint() != fitted.fingerprint()
    assert no_chars.encode(kote[:3]).shape == (3, 32)


def test_kiwi_tfidf_dim_is_capped_by_the_training_set(kote):
    encoder = build_encoder("kiwi-tfidf", "text")
    encoder.fit(kote[:12])
    assert 1 <= encoder.dim <= 12
    assert encoder.encode(kote[20:22]).shape == (2, encoder.dim)


def test_kiwi_tfidf_save_load_round_trip(fitted, kote, tmp_path):
    fitted.save_state(tmp_path / "state")
    # Plain data only: no pickle (and no Kiwi) in the state directory.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "kiwi_tfidf.json",
        "kiwi_tfidf.safetensors",
    ]
    loaded = build_encoder(fitted.spec, "text")
    loaded.load_state(tmp_path / "state")
    assert loaded.fingerprint() == fitted.fingerprint() and loaded.dim == fitted.dim
    np.testing.assert_array_equal(loaded.encode(kote[450:500]), fitted.encode(kote[450:500]))

    with pytest.raises(EncoderError, match="fitted with settings"):
        build_encoder("kiwi-tfidf?dim=16", "text").load_state(tmp_path / "state")
    with pytest.raises(EncoderError, match="missing"):
        build_encoder(fitted.spec, "text").load_state(tmp_path / "nowhere")
    manifest_path = tmp_path / "state" / "kiwi_tfidf.json"
    manifest = json.loads(manifest_path.read_text("utf-8"))
    manifest["char_vocab"][0] = "tampered"
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
    tampered = build_encoder(fitted.spec, "text")
    with pytest.raises(EncoderError, match="does not match its fingerprint"):
        tampered.load_state(tmp_path / "state")
    assert not tampered.is_fitted
    with pytest.raises(EncoderError, match="not fitted"):
        build_encoder("kiwi-tfidf", "text").save_state(tmp_path / "empty")


def test_kiwi_tfidf_options():
    encoder = build_encoder("kiwi-tfidf?char_ngrams=2-4&dim=64&min_df=2", "text")
    assert encoder.spec == "kiwi-tfidf?char_ngrams=2-4&dim=64&min_df=2"
    assert encoder.config()["char_ngrams"] == (2, 4)
    assert build_encoder(encoder.spec, "text").fingerprint() == encoder.fingerprint()
    assert build_encoder("kiwi-tfidf", "text").spec == "kiwi-tfidf"
    for bad, message in [
        ("kiwi-tfidf?dim=many", "dim must be an integer"),
        ("kiwi-tfidf?char_ngrams=3-1", "char_ngrams must look like"),
        ("kiwi-tfidf?char_ngrams=0&morph_ngrams=0", "cannot both be 0"),
        ("kiwi-tfidf?dims=3", r"unknown kiwi-tfidf encoder option\(s\) 'dims'"),
    ]:
        with pytest.raises(EncoderError, match=message):
            build_encoder(bad, "text")
