"""`POST /timeline`: an upload becomes segments + summary; its own, larger body limit."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import test_timeline_run as shared
from fastapi.testclient import TestClient
from support.thresholds import threshold_in_widest_gap

from emofuse.serve.app import create_app
from emofuse.serve.limits import ServeLimits
from emofuse.serve.timeline_route import TimelineLimits, include_timeline
from emofuse.timeline.scoring import match_segments

# The spoken recording and the toy bundles of the end-to-end tests.
voices, recording = shared.voices, shared.recording
speech_bundle, both_bundle = shared.speech_bundle, shared.both_bundle
spans = shared.spans


def client(bundle, *, body_bytes: int = 25 * 1024 * 1024, timeline_bytes: int = 512 * 1024**2):
    app = create_app(bundle, limits=ServeLimits(max_body_bytes=body_bytes), warm=False)
    include_timeline(app, TimelineLimits(max_body_bytes=timeline_bytes))
    return TestClient(app)


def test_upload_gives_segments_and_summary(speech_bundle, recording):
    path, truth = recording
    with client(speech_bundle) as http:
        response = http.post(
            "/timeline", files={"audio": ("session.wav", path.read_bytes(), "audio/wav")}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    found = [(s["start_s"], s["end_s"]) for s in body["segments"]]
    assert match_segments(spans(truth), found).share_matched() >= 0.9
    assert set(body["segments"][0]) >= {"start_s", "end_s", "label", "confidence", "p_loud", "text"}
    assert body["summary"]["recording"]["path"] == "session.wav"
    assert body["summary"]["segments"] == len(body["segments"])


def test_timeline_takes_bodies_larger_than_predict_allows(speech_bundle, recording):
    path, _ = recording
    data = path.read_bytes()
    small = len(data) // 2
    with client(speech_bundle, body_bytes=small, timeline_bytes=4 * len(data)) as http:
        files = {"audio": ("session.wav", data, "audio/wav")}
        assert http.post("/predict", files=files).status_code == 413
        assert http.post("/timeline", files=files).status_code == 200
    with client(speech_bundle, timeline_bytes=small) as http:
        refused = http.post("/timeline", files={"audio": ("session.wav", data, "audio/wav")})
    assert refused.status_code == 413


def test_bad_uploads_get_clear_answers(speech_bundle, both_bundle, recording, tmp_path):
    path, _ = recording
    with client(speech_bundle) as http:
        junk = http.post("/timeline", files={"audio": ("x.ogg", b"junk" * 50, "audio/ogg")})
        assert junk.status_code in (415, 422) and "x.ogg" in junk.json()["detail"]
        quiet = tmp_path / "quiet.wav"
        sf.write(quiet, np.zeros(16_000 * 5, dtype=np.float32), 16_000)
        empty = http.post("/timeline", files={"audio": ("quiet.wav", quiet.read_bytes())})
        assert empty.status_code == 200
        assert empty.json()["segments"] == []
        assert "no speech found in quiet.wav" in empty.json()["summary"]["message"]
    with client(both_bundle) as http:
        no_text = http.post("/timeline", files={"audio": ("s.wav", path.read_bytes())})
    assert no_text.status_code == 422
    assert "transcript" in no_text.json()["detail"] and "asr=true" in no_text.json()["detail"]


@pytest.mark.parametrize("channels", ["sideways"])
def test_unknown_channels_value_is_refused(speech_bundle, recording, channels):
    path, _ = recording
    with client(speech_bundle) as http:
        response = http.post(
            "/timeline", files={"audio": ("s.wav", path.read_bytes())}, data={"channels": channels}
        )
    assert response.status_code == 422 and "channels" in response.json()["detail"]


def _short_wav(seconds: float = 1.0) -> bytes:
    import io

    buffer = io.BytesIO()
    t = np.arange(int(16_000 * seconds)) / 16_000
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"colour": "blue"}, "unexpected field 'colour'"),
        ({"channels": ["mix", "separate"]}, "field 'channels' sent 2 times"),
    ],
)
def test_unknown_or_repeated_fields_are_refused(speech_bundle, data, needle):
    """As the API description says of every route: never silently dropped."""
    with client(speech_bundle) as http:
        response = http.post("/timeline", files={"audio": ("s.wav", _short_wav())}, data=data)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]


def test_two_recordings_in_one_request_are_refused(speech_bundle):
    files = [("audio", ("a.wav", _short_wav())), ("audio", ("b.wav", _short_wav()))]
    with client(speech_bundle) as http:
        response = http.post("/timeline", files=files)
    assert response.status_code == 422 and "'audio' sent 2 times" in response.json()["detail"]


def test_the_upload_never_touches_the_disk(speech_bundle, monkeypatch, tmp_path):
    """Issue 16: read from memory; no temporary folder, file or spooled part."""
    import tempfile

    from starlette.formparsers import MultiPartParser

    def no_disk(*args, **kwargs):
        raise AssertionError("the upload was written to disk")

    # Not relying on a process-wide patch of Starlette's spool size: its default (1 MB).
    monkeypatch.setattr(MultiPartParser, "spool_max_size", 1024 * 1024)
    with client(speech_bundle) as http:
        for name in ("mkdtemp", "mkstemp", "NamedTemporaryFile", "TemporaryFile"):
            monkeypatch.setattr(tempfile, name, no_disk)
        monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
        big = _short_wav(40.0)  # 1.3 MB: over the spool size
        assert len(big) > 1024 * 1024
        srt = b"1\n00:00:00,500 --> 00:00:02,000\nhello there\n"
        response = http.post(
            "/timeline",
            files={"audio": ("long.wav", big, "audio/wav"), "transcript": ("t.srt", srt)},
        )
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["recording"]["duration_s"] == pytest.approx(40.0)


def test_a_waiting_timeline_is_refused_before_its_body_is_read(speech_bundle):
    """The slot (ServeLimits.max_timelines, the app's own) is taken before the upload is
    read: a busy server answers 503 without buffering a recording."""
    import asyncio

    import httpx

    limits = ServeLimits(queue_timeout_s=0.2, max_timelines=1)
    app = create_app(speech_bundle, limits=limits, warm=False)
    read: list[int] = []

    async def body():
        read.append(1)
        yield b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        yield _short_wav() + b"\r\n--xyz--\r\n"

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
            app.state.timeline_slots.hold(),  # a timeline is running
        ):
            return await http.post(
                "/timeline",
                content=body(),
                headers={"content-type": "multipart/form-data; boundary=xyz"},
            )

    response = asyncio.run(run())
    assert response.status_code == 503, response.text
    assert "Retry-After" in response.headers and "timelines" in response.json()["detail"]
    assert read == []


def test_the_servers_min_confidence_reaches_timeline_segments(speech_bundle, recording):
    path, _ = recording
    files = {"audio": ("session.wav", path.read_bytes(), "audio/wav")}
    with client(speech_bundle) as http:
        plain = http.post("/timeline", files=files).json()["segments"]
    cut = threshold_in_widest_gap([s["confidence"] for s in plain])
    app = create_app(speech_bundle, warm=False, min_confidence=cut)
    include_timeline(app, TimelineLimits())
    with TestClient(app) as http:
        body = http.post("/timeline", files=files).json()
    assert [s["uncertain"] for s in body["segments"]] == [s["confidence"] < cut for s in plain]
    assert body["summary"]["settings"]["min_confidence"] == cut
