"""The prediction service in-process (Starlette's test client): answers for good
requests match the model's own, and every kind of bad request gets a clear 4xx.

The models are toy-encoder bundles built in milliseconds (no data needed); one test at
the end serves a model trained on real speech (EmoDB, skipped where it is absent)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from support.requirements import need_vosk
from support.serve_support import (
    heldout_clip,
    load_bundle,
    load_toy_bundle,
    tone,
    toy_clip,
    wav_bytes,
)

from emofuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(
    max_body_bytes=2 * 1024 * 1024,
    max_audio_s=10.0,
    max_batch_files=4,
    max_in_flight=2,
    queue_timeout_s=5.0,
)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_toy_bundle(tmp_path_factory, "speech")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, limits=LIMITS), raise_server_exceptions=True) as c:
        yield c


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A clip the toy models were not trained on."""
    path = tmp_path_factory.mktemp("clips") / "heldout.wav"
    path.write_bytes(wav_bytes(toy_clip("happy", 0.7, seed=42)))
    return path


@pytest.fixture(scope="module")
def clip_bytes(clip_file) -> bytes:
    return clip_file.read_bytes()


def _post(client, data: bytes, name: str = "clip.wav", **form):
    return client.post("/predict", files={"audio": (name, data, "audio/wav")}, data=form)


# ---------------------------------------------------------------- good requests


def test_predict_matches_the_model(client, predictor, clip_file, clip_bytes):
    response = _post(client, clip_bytes)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == set(predictor.labels)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["model"] == {"modality": predictor.modality}

    (direct,) = predictor.predict([clip_file])
    assert body["label"] == direct.label
    for label, p in direct.probabilities.items():
        assert body["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_predict_accepts_other_rates_and_formats(client, predictor, clip_bytes):
    import soundfile as sf
    import soxr

    wave, rate = sf.read(__import__("io").BytesIO(clip_bytes), dtype="float32")
    stereo_44k = np.stack([soxr.resample(wave, rate, 44_100)] * 2, axis=1)
    for fmt in ("WAV", "FLAC", "OGG"):
        response = _post(client, wav_bytes(stereo_44k, 44_100, fmt), name=f"clip.{fmt.lower()}")
        assert response.status_code == 200, (fmt, response.text)
        assert response.json()["label"] in predictor.labels


def test_health_labels_docs_and_page(client, predictor):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["labels"] == list(predictor.labels)
    assert health["max_in_flight"] == LIMITS.max_in_flight
    assert health["max_audio_s"] == LIMITS.max_audio_s
    from emofuse.palette import label_colours

    assert client.get("/labels").json() == {
        "labels": list(predictor.labels),
        "modality": predictor.modality,
        "colours": label_colours(list(predictor.labels)),
    }
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/labels"} <= set(schema["paths"])
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and 'id="predict-form"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_batch_reports_each_item(client, predictor, clip_bytes):
    files = [
        ("audio", ("good.wav", clip_bytes, "audio/wav")),
        ("audio", ("corrupt.wav", b"RIFF\x00\x00not really a wav file", "audio/wav")),
        ("audio", ("empty.wav", b"", "audio/wav")),
        ("audio", ("long.wav", wav_bytes(tone(LIMITS.max_audio_s + 1)), "audio/wav")),
    ]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    items = response.json()
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert [i["filename"] for i in items] == ["good.wav", "corrupt.wav", "empty.wav", "long.wav"]
    assert [i["status"] for i in items] == [200, 422, 422, 413]
    good, corrupt, empty, long = items
    assert good["result"]["label"] in predictor.labels and good["detail"] is None
    single = _post(client, clip_bytes).json()
    assert good["result"]["probabilities"] == pytest.approx(single["probabilities"], abs=1e-4)
    assert "corrupt.wav" in corrupt["detail"] and corrupt["result"] is None
    assert "empty" in empty["detail"]
    assert "too long" in long["detail"]


@pytest.mark.parametrize(
    ("files", "form", "status", "needle"),
    [
        ([], {}, 422, "at least one"),
        ([("audio", ("a.wav", b"x", "audio/wav"))] * 5, {}, 413, "limit is 4"),
        ([("audio", ("a.wav", b"x", "audio/wav"))] * 2, {"texts": ["one"]}, 422, "2 audio files"),
        ([("audio", ("a.wav", b"x", "audio/wav"))], {"texts_json": "[oops"}, 422, "not valid JSON"),
        ([("audio", ("a.wav", b"x", "audio/wav"))], {"texts_json": "[1]"}, 422, "JSON list"),
    ],
)
def test_bad_batches(client, files, form, status, needle):
    response = client.post("/predict/batch", files=files or None, data=form)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


# ---------------------------------------------------------------- bad requests


def test_missing_audio_is_422_naming_the_field(client):
    response = client.post("/predict", data={"text": "hello"})
    assert response.status_code == 422
    assert "'audio' is required" in response.json()["detail"]


def test_empty_upload(client):
    response = _post(client, b"", name="nothing.wav")
    assert response.status_code == 422
    assert response.json()["detail"] == "nothing.wav: empty upload (0 bytes)"


@pytest.mark.parametrize(
    ("data", "name", "status"),
    [
        (b"this is plain text, not audio" * 10, "notes.txt", 415),
        (bytes(range(256)) * 40, "noise.mp3", 415),
        # A WAV that does not decode is a bad request (422), not a format we lack (415).
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage", "broken.wav", 422),
        (b"RIFF\x00\x00not really a wav file", "corrupt.wav", 422),
    ],
)
def test_unreadable_audio_status_comes_from_the_error_class(client, data, name, status):
    response = _post(client, data, name=name)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{name}: unreadable audio")


def test_status_never_depends_on_the_message(predictor, clip_bytes):
    """A decoder error whose text says "unsupported" or "too long" keeps its class's status."""
    from emofuse.audio import AudioTooShort, AudioUnreadable

    def misleading(kind):
        def decode(data, rate, *, name, max_duration_s):
            raise kind(f"{name}: unsupported, too long, longer than anything")

        return decode

    for kind, status in ((AudioUnreadable, 422), (AudioTooShort, 422)):
        app = create_app(predictor, limits=LIMITS, warm=False, decode=misleading(kind))
        with TestClient(app) as client:
            assert _post(client, clip_bytes).status_code == status


def test_too_long_and_too_short_clips(client):
    long = _post(client, wav_bytes(tone(LIMITS.max_audio_s + 0.5)), name="long.wav")
    assert long.status_code == 413
    assert "long.wav: too long" in long.json()["detail"]
    short = _post(client, wav_bytes(tone(0.01)), name="short.wav")
    assert short.status_code == 422
    assert "short.wav: too short" in short.json()["detail"]


def test_body_too_large_from_content_length(client):
    big = bytes(LIMITS.max_body_bytes + 1)
    response = _post(client, big, name="huge.wav")
    assert response.status_code == 413
    assert "larger than the server's limit" in response.json()["detail"]


def test_body_too_large_while_streaming(client):
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    chunk = bytes(256 * 1024)

    def body():  # a well-formed multipart file part that never ends
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        for _ in range(2 * LIMITS.max_body_bytes // len(chunk)):
            yield chunk

    response = client.post(
        "/predict",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413
    assert "larger than the server's limit" in response.json()["detail"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"data": {"audio": "not a file"}}, "audio"),
        ({"json": {"audio": "abc"}}, "audio"),
        (
            {"content": b"\x00\x01", "headers": {"content-type": "application/octet-stream"}},
            "audio",
        ),
        (
            {"content": b"--zz\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            "",
        ),
    ],
)
def test_wrong_shapes_are_4xx_json(client, kwargs, needle):
    response = client.post("/predict", **kwargs)
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and needle in detail


def test_text_longer_than_limit(predictor, clip_bytes):
    limits = ServeLimits(max_text_chars=10)
    with TestClient(create_app(predictor, limits=limits, warm=False)) as client:
        response = _post(client, clip_bytes, text="x" * 11)
    assert response.status_code == 422
    assert "limit is 10" in response.json()["detail"]


def test_unexpected_errors_are_logged_500s(predictor, clip_bytes, caplog, monkeypatch):
    # A uvicorn server started earlier in this process (its log config) may have stopped
    # "emofuse" from propagating to the root logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("emofuse"), "propagate", True)

    class Broken:
        labels, modality = predictor.labels, predictor.modality
        needs_text, needs_audio = predictor.needs_text, predictor.needs_audio

        def predict(self, audio, texts=None, *, asr=None):
            raise RuntimeError("boom inside the model")

    app = create_app(Broken(), limits=LIMITS, warm=False)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, "emofuse.serve"),
    ):
        response = _post(client, clip_bytes)
    assert response.status_code == 500
    assert response.json()["detail"] == "internal error (RuntimeError); see server log"
    assert "boom inside the model" in caplog.text


# ---------------------------------------------------------------- models that read text


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    return load_toy_bundle(tmp_path_factory, "both")


@pytest.fixture(scope="module")
def text_only(tmp_path_factory):
    return load_toy_bundle(tmp_path_factory, "text")


def test_fused_model_uses_the_sent_text(fused, clip_file, clip_bytes):
    sentence = "Das will sie am Mittwoch abgeben."
    with TestClient(create_app(fused, limits=LIMITS)) as client:
        response = _post(client, clip_bytes, text=f"  {sentence} ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == sentence
    assert body["model"] == {"modality": "both"}
    (direct,) = fused.predict([clip_file], [sentence])
    assert body["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)


def test_sent_text_is_cleaned_as_training_cleans_it(fused, clip_bytes):
    """The service used to strip the ends only: inner runs of spaces and decomposed
    Hangul reached the encoder as sent, unlike the text the model was trained on."""
    import unicodedata

    sentence = "오늘 정말 좋아요!"
    messy = " " + unicodedata.normalize("NFD", sentence).replace(" ", "   ") + " "
    with TestClient(create_app(fused, limits=LIMITS, warm=False)) as client:
        clean = _post(client, clip_bytes, text=sentence).json()
        sent = _post(client, clip_bytes, text=messy).json()
    assert sent["text"] == sentence
    assert sent["probabilities"] == pytest.approx(clean["probabilities"], abs=1e-6)


def test_text_needed_but_missing_names_both_ways_out(fused, clip_bytes):
    with TestClient(create_app(fused, limits=LIMITS, warm=False)) as client:
        for form in ({}, {"text": "   "}):
            response = _post(client, clip_bytes, **form)
            assert response.status_code == 422
            detail = response.json()["detail"]
            assert "'text' form field" in detail and "--asr vosk" in detail


def test_fused_batch_with_texts_and_texts_json(fused, clip_file, clip_bytes):
    files = [("audio", ("a.wav", clip_bytes, "audio/wav"))] * 2
    texts = ["Der Lappen liegt auf dem Eisschrank.", "Das will sie am Mittwoch abgeben."]
    direct = fused.predict([clip_file] * 2, texts)
    with TestClient(create_app(fused, limits=LIMITS, warm=False)) as client:
        by_parts = client.post("/predict/batch", files=files, data={"texts": texts}).json()
        by_json = client.post(
            "/predict/batch", files=files, data={"texts_json": __import__("json").dumps(texts)}
        ).json()
        one_missing = client.post(
            "/predict/batch", files=files, data={"texts_json": '["Hallo", null]'}
        ).json()
    for items in (by_parts, by_json):
        assert [i["result"]["text"] for i in items] == texts
        for item, expected in zip(items, direct, strict=True):
            assert item["result"]["probabilities"] == pytest.approx(
                expected.probabilities, abs=1e-5
            )
    assert [i["status"] for i in one_missing] == [200, 422]
    assert "--asr vosk" in one_missing[1]["detail"]


def test_text_only_model_needs_no_audio(text_only):
    with TestClient(create_app(text_only, limits=LIMITS)) as client:
        response = client.post("/predict", data={"text": "Hallo Welt"})
        assert response.status_code == 200, response.text
        assert response.json()["text"] == "Hallo Welt"
        assert response.json()["probabilities"] == pytest.approx(
            text_only.predict(None, ["Hallo Welt"])[0].probabilities, abs=1e-4
        )
        with_empty_file = client.post(
            "/predict",
            files={"audio": ("", b"", "application/octet-stream")},
            data={"text": "Hallo Welt"},
        )  # what an HTML form sends with no file chosen: the clip is not needed here
        assert with_empty_file.status_code == 200, with_empty_file.text
        nothing = client.post("/predict", data={})
        assert nothing.status_code == 422
        assert "'text' form field" in nothing.json()["detail"]
        batch = client.post("/predict/batch", data={"texts": ["eins", "zwei"]})
        assert [i["status"] for i in batch.json()] == [200, 200]
        assert client.get("/health").json()["needs_audio"] is False


@pytest.mark.slow
def test_asr_transcribes_clips_sent_without_text(emodb_dir, tmp_path_factory):
    """With --asr vosk, a clip without text is transcribed and the transcript is used
    (real speech: Vosk hears no words in a tone)."""
    need_vosk()
    from emofuse.asr import build_asr

    fused = load_bundle(emodb_dir, tmp_path_factory, "both")
    clip_bytes = heldout_clip(emodb_dir).read_bytes()

    asr = build_asr("vosk")
    with TestClient(create_app(fused, limits=LIMITS, asr=asr)) as client:
        response = _post(client, clip_bytes)
        assert client.get("/health").json()["asr"] is True
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["text"], str) and body["text"].strip()  # Vosk heard words
    import soundfile as sf

    wave, rate = sf.read(__import__("io").BytesIO(clip_bytes), dtype="float32")
    expected = fused.predict([(wave, rate)], [body["text"]])[0]
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-4)


def test_api_docs_render_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = client.get("/docs-static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/openapi.json").json()["paths"]["/predict"]


# ---------------------------------------------------------------- real speech


def test_a_model_trained_on_real_speech_serves_real_speech(emodb_dir, tmp_path_factory):
    """The one test on real data: an eGeMAPS model trained on EmoDB clips, served."""
    bundle = load_bundle(emodb_dir, tmp_path_factory, "speech")
    path = heldout_clip(emodb_dir)
    with TestClient(create_app(bundle, limits=LIMITS)) as client:
        response = _post(client, path.read_bytes())
    assert response.status_code == 200, response.text
    (direct,) = bundle.predict([path])
    assert response.json()["label"] == direct.label
    assert response.json()["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)


def test_handlers_work_without_http(predictor, clip_file, clip_bytes):
    """The request logic is plain Python: items in, statuses and predictions out."""
    from emofuse.serve.handlers import PredictionService

    service = PredictionService(predictor, LIMITS)
    items = [
        service.item(0, "good.wav", clip_bytes, None),
        service.item(1, "notes.txt", b"plain text, not audio" * 10, None),
        service.item(2, "long.wav", wav_bytes(tone(LIMITS.max_audio_s + 1)), None),
        service.item(3, None, None, "text only"),
    ]
    results = service.predict_items(items)
    assert [i.status for i in items] == [200, 415, 413, 422]
    (direct,) = predictor.predict([clip_file])
    assert results[0].probabilities == pytest.approx(direct.probabilities, abs=1e-5)
    assert results[1:] == [None, None, None]
    assert service.health(in_flight=0).max_batch_files == LIMITS.max_batch_files


class _RateRecorder:
    """A speech model whose encoder wants ``rate_hz``; records what it is given."""

    labels = ["a", "b"]
    modality = "speech"
    needs_text, needs_audio = False, True

    def __init__(self, rate_hz: int):
        self.rate_hz = rate_hz
        self.seen: list[tuple[int, int]] = []

    def encoder(self, modality: str):
        return type("Encoder", (), {"sample_rate_hz": self.rate_hz})()

    def predict(self, audio, texts=None, *, asr=None):
        from emofuse.bundle import Prediction

        out = []
        for wave, rate in audio:
            self.seen.append((len(wave), rate))
            out.append(Prediction(label="a", probabilities={"a": 1.0, "b": 0.0}))
        return out


@pytest.mark.parametrize("rate_hz", [8_000, 24_000])
def test_uploads_are_decoded_once_at_the_speech_encoders_rate(rate_hz):
    """No decode to 16 kHz followed by a second resampling in the engine."""
    from emofuse.serve.handlers import PredictionService

    model = _RateRecorder(rate_hz)
    service = PredictionService(model, LIMITS)
    seconds = 0.8
    (result,) = service.predict_items([service.item(0, "c.wav", wav_bytes(tone(seconds)), None)])
    assert result is not None
    ((n_samples, rate),) = model.seen
    assert rate == rate_hz
    assert n_samples == pytest.approx(seconds * rate_hz, abs=2)


def test_max_clip_s_help_says_it_lowers_this_servers_limit_only(capsys):
    from emofuse.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--max-clip-s S,")  # the option list, not the usage line
    help_text = text[start : text.index("--timeline-max-mb", start)]
    assert "lower the one limit of every command" not in help_text
    assert "this server" in help_text
