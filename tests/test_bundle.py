"""Bundles: save, load without the training data, predict identically, and refuse
what would give meaningless answers (other encoders, wrong widths, missing text)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.toy_encoders import load_vocab, save_vocab

from emofuse.audio import AudioError
from emofuse.bundle import Bundle, BundleError, save_bundle
from emofuse.encoders import Encoder, build_encoder, register_encoder, stable_hash
from emofuse.head.train import TrainConfig, fit_head

LABELS = ["happy", "sad", "angry"]
TONE_HZ = {"happy": 660.0, "sad": 220.0, "angry": 1500.0}
WORDS = {"happy": "좋아요 신나요", "sad": "슬퍼요 우울해요", "angry": "화나요 짜증나요"}
#: Stands in for a library version that decides what the toy encoders compute.
TOY_SETTINGS = {"version": 1}


class ToySpeech(Encoder):
    """Log shares of 0-4 kHz spectral bands plus RMS: tones of different pitch separate."""

    modality = "speech"
    name = "toy-speech"
    sample_rate_hz = 16_000

    def __init__(self, bands: int = 8):
        self.bands = int(bands)

    @property
    def spec(self) -> str:
        return "toy-speech" if self.bands == 8 else f"toy-speech?bands={self.bands}"

    @property
    def dim(self) -> int:
        return self.bands + 1

    def config(self) -> dict:
        return {"bands": self.bands, "version": TOY_SETTINGS["version"]}

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for wave in batch:
            spectrum = np.abs(np.fft.rfft(np.asarray(wave, dtype=np.float64), n=4096))[:1024]
            share = spectrum / max(spectrum.sum(), 1e-9)  # 0-4 kHz, independent of length
            bands = [np.log(b.sum() + 1e-4) for b in np.array_split(share, self.bands)]
            rows.append([*bands, float(np.sqrt(np.mean(np.square(wave))))])
        return np.asarray(rows, dtype=np.float32)


class ToyText(Encoder):
    """Character counts over a vocabulary fitted on training text (has state)."""

    modality = "text"
    name = "toy-text"
    needs_fit = True

    def __init__(self, size: int = 24):
        self.size = int(size)
        self.vocab: list[str] = []

    @property
    def spec(self) -> str:
        return "toy-text"

    @property
    def dim(self) -> int:
        return self.size

    def config(self) -> dict:
        return {"size": self.size}

    @property
    def is_fitted(self) -> bool:
        return bool(self.vocab)

    def state_fingerprint(self) -> str:
        return stable_hash(self.vocab) if self.vocab else ""

    def fit(self, texts: Sequence[str]) -> None:
        counts: dict[str, int] = {}
        for text in texts:
            for ch in text.replace(" ", ""):
                counts[ch] = counts.get(ch, 0) + 1
        self.vocab = sorted(counts, key=lambda c: (-counts[c], c))[: self.size]

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(batch), self.size), dtype=np.float32)
        index = {c: i for i, c in enumerate(self.vocab)}
        for row, text in enumerate(batch):
            for ch in text:
                if ch in index:
                    out[row, index[ch]] += 1
        return out

    def save_state(self, directory: str | Path) -> None:
        save_vocab(directory, self.vocab)

    def load_state(self, directory: str | Path) -> None:
        self.vocab = load_vocab(directory)


register_encoder("speech", "toy-speech", lambda options: ToySpeech(**options))
register_encoder("text", "toy-text", lambda options: ToyText(**options))


def make_clips(
    directory: Path, per_label: int, seed: int
) -> tuple[list[Path], list[str], list[int]]:
    """Tones per label (with noise and a random length) written as 16 kHz WAVs."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths, texts, labels = [], [], []
    for k, label in enumerate(LABELS):
        for i in range(per_label):
            seconds = rng.uniform(0.3, 0.8)
            t = np.arange(int(seconds * 16_000)) / 16_000
            hz = TONE_HZ[label] * rng.uniform(0.93, 1.07)
            wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * rng.normal(size=len(t))
            path = directory / f"{label}_{seed}_{i}.wav"
            sf.write(path, wave.astype(np.float32), 16_000, subtype="PCM_16")
            paths.append(path)
            texts.append(f"오늘은 {WORDS[label]} 정말")
            labels.append(k)
    return paths, texts, labels


def features(paths, texts, speech: Encoder | None, text: Encoder | None):
    from emofuse.audio import load_audio

    out = {}
    if speech is not None:
        out["speech"] = speech.encode([load_audio(p, speech.sample_rate_hz) for p in paths])
    if text is not None:
        out["text"] = text.encode(texts)
    return out


def train_bundle(tmp_path: Path, modality: str, name: str = "bundle"):
    paths, texts, y = make_clips(tmp_path / "train", 10, seed=1)
    speech = build_encoder("toy-speech", "speech") if modality != "text" else None
    text = build_encoder("toy-text", "text") if modality != "speech" else None
    if text is not None:
        text.fit(texts)
    feats = features(paths, texts, speech, text)
    x = np.hstack([feats[m] for m in ("speech", "text") if m in feats])
    dims = {m: feats[m].shape[1] for m in feats}
    config = TrainConfig(recipe="paper", epochs=20, hidden=16, lr=1e-2, batch_size=8)
    trained = fit_head(x, np.array(y), n_classes=3, config=config, input_dims=dims, progress=False)
    encoders = {m: e for m, e in (("speech", speech), ("text", text)) if e is not None}
    out = save_bundle(
        tmp_path / name, trained, labels=LABELS, modality=modality, encoders=encoders,
        metrics={"uar": 1.0}, provenance={"split": "stratified", "seed": 0, "train_ids": [p.stem for p in paths]},
    )  # fmt: skip
    return out, trained, encoders


@pytest.fixture
def test_clips(tmp_path):
    return make_clips(tmp_path / "test", 4, seed=9)


def test_round_trip_gives_identical_predictions(tmp_path, test_clips):
    out, trained, encoders = train_bundle(tmp_path, "both")
    paths, texts, y = test_clips
    feats = features(paths, texts, encoders["speech"], encoders["text"])
    expected = trained.predict_proba(np.hstack([feats["speech"], feats["text"]]))

    bundle = Bundle.load(out)
    assert (bundle.labels, bundle.modality, bundle.needs_text, bundle.needs_audio) == (
        LABELS, "both", True, True,
    )  # fmt: skip
    predictions = bundle.predict(paths, texts)
    got = np.array([[p.probabilities[label] for label in LABELS] for p in predictions])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert [p.label for p in predictions] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert [p.text for p in predictions] == texts
    assert np.mean([LABELS.index(p.label) == t for p, t in zip(predictions, y, strict=True)]) > 0.9
    np.testing.assert_array_equal(
        bundle.predict_features(feats), Bundle.load(out).predict_features(feats)
    )

    # (waveform, rate) pairs give what the files give
    waves = [sf.read(p, dtype="float32") for p in paths[:2]]
    pairs = bundle.predict(waves, texts[:2])
    for pair, file in zip(pairs, predictions[:2], strict=True):
        assert pair.label == file.label
        assert pair.probabilities == pytest.approx(file.probabilities, rel=1e-5)


def test_bundle_config_is_readable_and_complete(tmp_path):
    out, trained, encoders = train_bundle(tmp_path, "both")
    config = json.loads((out / "config.json").read_text())
    assert config["labels"] == LABELS and config["modality"] == "both"
    assert config["input_dims"] == {"speech": 9, "text": 24}
    for m in ("speech", "text"):
        record = config["encoders"][m]
        assert record["fingerprint"] == encoders[m].fingerprint()
        assert record["dim"] == encoders[m].dim
        assert record["parts"][0]["dim"] == encoders[m].dim
    assert config["encoders"]["speech"]["state"] is None
    state = out / config["encoders"]["text"]["state"]
    assert json.loads((state / "vocab.json").read_text()) == encoders["text"].vocab
    assert config["provenance"]["split"] == "stratified"
    assert (out / config["provenance"]["train_ids_file"]).read_text().split() == [
        f"{label}_1_{i}" for label in LABELS for i in range(10)
    ]
    assert config["training"]["config"] == trained.config.to_dict()
    assert len(config["training"]["history"]) == 20
    assert config["versions"]["torch"] and config["versions"]["emofuse"]
    assert config["metrics"] == {"uar": 1.0} and config["created"]
    assert (out / "model.safetensors").stat().st_size > 0
    assert not list(tmp_path.glob(".bundle.*")), "temporary directory left behind"


def test_refuses_encoder_with_other_fingerprint(tmp_path, test_clips, monkeypatch):
    out, _, encoders = train_bundle(tmp_path, "speech")
    recorded = encoders["speech"].fingerprint()
    monkeypatch.setitem(TOY_SETTINGS, "version", 2)  # "the library changed since training"
    bundle = Bundle.load(out)  # lazy: loading still works
    with pytest.raises(BundleError) as caught:
        bundle.predict(test_clips[0][:1])
    message = str(caught.value)
    assert "speech encoder 'toy-speech'" in message
    assert recorded in message and build_encoder("toy-speech", "speech").fingerprint() in message
    assert "config.version: bundle 1, now 2" in message


def test_refuses_changed_fitted_state(tmp_path, test_clips):
    out, _, _ = train_bundle(tmp_path, "text")
    (out / "encoders/text/state/vocab.json").write_text(json.dumps(["가", "나"]))
    with pytest.raises(BundleError, match="fitted state"):
        Bundle.load(out).predict(None, ["좋아요"])


def test_refuses_wrong_dims(tmp_path):
    out, trained, encoders = train_bundle(tmp_path, "both")
    bundle = Bundle.load(out)
    with pytest.raises(BundleError, match="speech features have shape \\(2, 5\\).*9 values"):
        bundle.predict_features({"speech": np.zeros((2, 5)), "text": np.zeros((2, 24))})
    with pytest.raises(BundleError, match="needs text features"):
        bundle.predict_features({"speech": np.zeros((2, 9))})
    with pytest.raises(BundleError, match="the text encoder 'toy-speech' is a speech encoder"):
        wrong = {"speech": build_encoder("toy-speech", "speech"), "text": encoders["speech"]}
        save_bundle(tmp_path / "x", trained, labels=LABELS, modality="both", encoders=wrong)
    with pytest.raises(BundleError, match="gives 5 values but the head was trained on 9"):
        wrong = {"speech": build_encoder("toy-speech?bands=4", "speech"), "text": encoders["text"]}
        save_bundle(tmp_path / "x", trained, labels=LABELS, modality="both", encoders=wrong)


def test_missing_text_names_both_ways_out(tmp_path, test_clips):
    out, _, _ = train_bundle(tmp_path, "both")
    paths, texts, _ = test_clips
    bundle = Bundle.load(out)
    with pytest.raises(BundleError) as caught:
        bundle.predict(paths[:2])
    message = str(caught.value)
    assert str(paths[0]) in message and "--text '...'" in message and "--asr vosk" in message

    class FakeAsr:
        def __init__(self):
            self.calls = []

        def transcribe(self, waveform, sample_rate_hz):
            self.calls.append((len(waveform), sample_rate_hz))
            return texts[0]

    asr = FakeAsr()
    predictions = bundle.predict(paths[:2], [None, texts[1]], asr=asr)
    assert len(asr.calls) == 1 and asr.calls[0][1] == 16_000  # only the clip without text
    assert [p.text for p in predictions] == [texts[0], texts[1]]
    assert all("warnings" not in p.extra for p in predictions)

    class DeafAsr:
        def transcribe(self, waveform, sample_rate_hz):
            return "  "

    (heard_nothing,) = bundle.predict(paths[:1], asr=DeafAsr())
    assert "heard no words" in heard_nothing.extra["warnings"][0]


def test_speech_only_ignores_text_and_text_only_needs_no_audio(tmp_path, test_clips):
    paths, texts, y = test_clips
    speech_bundle = Bundle.load(train_bundle(tmp_path, "speech", "s")[0])
    assert not speech_bundle.needs_text
    a = speech_bundle.predict(paths)
    b = speech_bundle.predict(paths, ["아무 말"] * len(paths))
    assert [p.probabilities for p in a] == [p.probabilities for p in b]
    assert all(p.text is None for p in a)

    text_bundle = Bundle.load(train_bundle(tmp_path, "text", "t")[0])
    assert not text_bundle.needs_audio
    predictions = text_bundle.predict(None, texts)
    assert [LABELS.index(p.label) for p in predictions] == y
    assert text_bundle.predict([None] * 2, texts[:2])[0].label == predictions[0].label


def test_bad_audio_names_the_file(tmp_path, monkeypatch):
    out, _, _ = train_bundle(tmp_path, "speech")
    bundle = Bundle.load(out)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not really a wav file")
    with pytest.raises(AudioError, match="broken.wav"):
        bundle.predict([broken])
    with pytest.raises(AudioError, match="nowhere.wav: no such file"):
        bundle.predict([tmp_path / "nowhere.wav"])
    with pytest.raises(AudioError, match="NaN"):
        bundle.predict([(np.array([0.1, np.nan] * 800, dtype=np.float32), 16_000)])
    from emofuse.encoders import EncoderError

    def refuse(self, batch):
        raise EncoderError("toy-speech: clip too quiet")

    monkeypatch.setattr(ToySpeech, "encode", refuse)
    wave = (np.zeros(8000, dtype=np.float32), 16_000)
    with pytest.raises(BundleError, match="speech encoder 'toy-speech' failed: .*too quiet"):
        bundle.predict([wave])


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        Bundle.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not an emofuse bundle \\(no config.json\\)"):
        Bundle.load(tmp_path / "empty")
    out, trained, encoders = train_bundle(tmp_path, "speech")
    config = json.loads((out / "config.json").read_text())
    config["format_version"] = 99
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="format version 99"):
        Bundle.load(out)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(BundleError, match="refusing to overwrite"):
        save_bundle(other, trained, labels=LABELS, modality="speech", encoders=encoders)
    assert (other / "thesis.txt").read_text() == "precious"
    # an existing bundle is replaced
    again = save_bundle(out, trained, labels=LABELS, modality="speech", encoders=encoders)
    # the paper recipe does not clip: format 1, which emofuse before the clip reads
    assert trained.standardizer.limit is None
    assert Bundle.load(again).config["format_version"] == 1
    trained.standardizer.limit = 5.0  # a clipped head: format 2, refused by older readers
    again = save_bundle(out, trained, labels=LABELS, modality="speech", encoders=encoders)
    assert Bundle.load(again).config["format_version"] == 2
    assert Bundle.load(again).standardizer.limit == 5.0


def test_channel_first_arrays_predict_like_the_file(tmp_path, test_clips):
    """A (channels, samples) array was averaged over the samples into a 2-sample clip
    that still got a confident label; now it is the clip the file holds."""
    from emofuse.audio import AudioTooShort

    bundle = Bundle.load(train_bundle(tmp_path, "speech")[0])
    path = test_clips[0][0]
    frames, rate = sf.read(path, dtype="float32")
    (from_file,) = bundle.predict([path])
    (channels_first,) = bundle.predict([(np.stack([frames, frames]), rate)])
    assert channels_first.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    (from_bytes,) = bundle.predict([path.read_bytes()])
    assert from_bytes.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    with pytest.raises(AudioTooShort, match="clip 0: too short"):
        bundle.predict([(np.zeros((2, 40), dtype=np.float32), 16_000)])


def test_prediction_cleans_text_as_the_feature_store_does(tmp_path):
    """`Bundle.predict` encoded the raw string; it now encodes `clean_text` of it, which is
    what training and evaluation encode (so decomposed Hangul and stray spaces agree)."""
    import unicodedata

    from emofuse.text import clean_text

    out, _, encoders = train_bundle(tmp_path, "text")
    bundle = Bundle.load(out)
    text = f"오늘은 {WORDS['sad']} 정말"
    messy = "  " + unicodedata.normalize("NFD", text).replace(" ", "   ") + "\n"
    assert clean_text(messy) == text
    clean, raw = bundle.predict(None, [text, messy])
    assert raw.text == text
    assert raw.probabilities == pytest.approx(clean.probabilities, abs=1e-7)
    expected = bundle.predict_features({"text": encoders["text"].encode([text])})[0]
    assert [raw.probabilities[label] for label in LABELS] == pytest.approx(expected, abs=1e-6)


def test_engine_fails_a_bad_input_alone(tmp_path, test_clips):
    from emofuse.audio import AudioUnreadable
    from emofuse.predict.engine import PredictInput, PredictionEngine, PredictionError

    paths, texts, _ = test_clips
    bundle = Bundle.load(train_bundle(tmp_path, "both")[0])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not really a wav file")
    engine = PredictionEngine(bundle, batch_size=2)
    items = [
        PredictInput(paths[0], texts[0]),
        PredictInput(broken, texts[1]),
        PredictInput(paths[2], None),
        PredictInput(paths[3], texts[3]),
    ]
    outcomes = engine.predict_each(items)
    assert isinstance(outcomes[1].error, AudioUnreadable) and outcomes[1].prediction is None
    assert isinstance(outcomes[2].error, PredictionError)
    assert "--asr vosk" in str(outcomes[2].error)
    expected = bundle.predict([paths[0], paths[3]], [texts[0], texts[3]])
    for outcome, want in zip([outcomes[0], outcomes[3]], expected, strict=True):
        assert outcome.error is None
        assert outcome.prediction.probabilities == pytest.approx(want.probabilities, abs=1e-6)


def test_a_changed_bundle_is_refused_at_load(tmp_path):
    """Labels reordered in config.json, or weights changed after saving, would give
    confident answers under the wrong names; both are refused, naming the file."""
    out, _, _ = train_bundle(tmp_path, "speech")
    config_path = out / "config.json"
    original = config_path.read_text()
    config = json.loads(original)
    config["labels"] = [config["labels"][1], config["labels"][0], *config["labels"][2:]]
    config_path.write_text(json.dumps(config))
    with pytest.raises(BundleError, match="config.json: labels .* differ from those the weights"):
        Bundle.load(out)
    config_path.write_text(original)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.safetensors: its contents differ"):
        Bundle.load(out)


def test_save_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    out, trained, encoders = train_bundle(tmp_path, "speech")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "keep").write_text("precious")
    with pytest.raises(BundleError, match="not an emofuse bundle"):
        save_bundle(target, trained, labels=LABELS, modality="speech", encoders=encoders)
    assert (target / "keep").read_text() == "precious"


def test_warnings_for_silence_and_ignored_text(tmp_path, test_clips):
    bundle = Bundle.load(train_bundle(tmp_path, "speech")[0])
    silent, spoken = bundle.predict(
        [(np.zeros(16_000, dtype=np.float32), 16_000), test_clips[0][0]], ["", "좋아요"]
    )
    assert "digital silence" in silent.extra["warnings"][0]
    assert spoken.extra["warnings"] == ["this is a speech model: the text was not used"]
