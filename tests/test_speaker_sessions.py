"""The service's speaker sessions: an optional `speaker` field names a session whose
running statistics (in memory only: bounded, expiring, forgotten on DELETE) a bundle that
adapts to speakers adds each clip to before scoring it; every answer says how many clips
that was (`speaker_clips`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from support.speaker_bundles import adapting, fit_norm, speech_vectors
from support.toy_bundle import LABELS, toy_table, train_toy_bundle

from emofuse.bundle import Bundle
from emofuse.head.speaker_stats import Moments
from emofuse.serve import ServeLimits, create_app
from emofuse.serve.speakers import SpeakerSessions

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("speaker-sessions")
    bundle_dir = train_toy_bundle(root)
    table = toy_table(root / "table")
    return bundle_dir, table, fit_norm(Bundle.load(bundle_dir), table, k=1.0)


@pytest.fixture(scope="module")
def bundle(work) -> Bundle:
    bundle_dir, _, norm = work
    return adapting(Bundle.load(bundle_dir), norm)


def _app(bundle, sessions: SpeakerSessions | None = None, **limits):
    return create_app(
        bundle, limits=ServeLimits(max_batch_files=8, **limits), warm=False,
        speaker_sessions=sessions,
    )  # fmt: skip


def _files(paths) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("audio", (Path(p).name, Path(p).read_bytes(), "audio/wav")) for p in paths]


def _p(result: dict) -> np.ndarray:
    return np.array([result["probabilities"][label] for label in LABELS])


def test_clips_of_a_session_are_added_before_scoring(bundle, work):
    table = work[1]
    rows = table[table["speaker"] == "spk3"].reset_index(drop=True)
    sessions = SpeakerSessions()
    with TestClient(_app(bundle, sessions)) as client:
        answers = []
        for audio, text in zip(rows["audio"], rows["text"], strict=True):
            response = client.post(
                "/predict", files=_files([audio]), data={"text": text, "speaker": "call-1"}
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
        assert [a["speaker_clips"] for a in answers] == list(range(1, len(rows) + 1))
        health = client.get("/health").json()
        assert health["adapts_to_speakers"] and health["speaker_sessions"] == 1
        # the same clips in one batch, in a new session: the same answers
        batch = client.post(
            "/predict/batch", files=_files(rows["audio"]),
            data={"texts": list(rows["text"]), "speaker": "call-2"},
        )  # fmt: skip
        items = [item["result"] for item in batch.json()]
        assert [i["speaker_clips"] for i in items] == [a["speaker_clips"] for a in answers]
        for one, many in zip(answers, items, strict=True):
            np.testing.assert_allclose(_p(one), _p(many), atol=TOLERANCE)
        # Python with running statistics: the same numbers
        running: dict[str, Moments] = {}
        direct = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker="x",
                                running_stats=running)  # fmt: skip
        for one, p in zip(answers, direct, strict=True):
            np.testing.assert_allclose(_p(one), [p.probabilities[x] for x in LABELS],
                                       atol=TOLERANCE)  # fmt: skip
        # no speaker: not adapted, no count
        plain = client.post("/predict", files=_files(rows["audio"][:1]),
                            data={"text": rows["text"][0]}).json()  # fmt: skip
        assert plain["speaker_clips"] is None
        assert not np.allclose(_p(plain), _p(answers[0]), atol=1e-6)

        assert client.delete("/speakers/call-1").status_code == 200
        assert "call-1" not in sessions
        gone = client.delete("/speakers/call-1")
        assert gone.status_code == 404 and "no such speaker session" in gone.json()["detail"]
        again = client.post("/predict", files=_files(rows["audio"][:1]),
                            data={"text": rows["text"][0], "speaker": "call-1"})  # fmt: skip
        assert again.json()["speaker_clips"] == 1  # a fresh session


def test_bad_session_ids_and_a_model_that_does_not_adapt(bundle, work):
    bundle_dir, table, _ = work
    clip, text = table["audio"][0], table["text"][0]
    with TestClient(_app(bundle)) as client:
        for bad in ("   ", "a\x00b", "x" * 300, "a/b", "50%"):  # ("": no session)
            response = client.post("/predict", files=_files([clip]),
                                   data={"text": text, "speaker": bad})  # fmt: skip
            assert response.status_code == 422, (bad, response.text)
        twice = client.post("/predict/batch", files=_files([clip]),
                            data={"texts": [text], "speaker": ["a", "b"]})  # fmt: skip
        assert twice.status_code == 422 and "one session" in twice.json()["detail"]
        assert client.delete("/speakers/never-seen").status_code == 404
    plain = Bundle.load(bundle_dir)
    with TestClient(_app(plain)) as client:
        answer = client.post("/predict", files=_files([clip]),
                             data={"text": text, "speaker": "s"}).json()  # fmt: skip
        assert answer["speaker_clips"] is None
        assert any("does not adapt to speakers" in w for w in answer["warnings"])
        assert client.get("/health").json()["speaker_sessions"] == 0


def test_thousands_of_sessions_stay_bounded():
    clock = [0.0]
    sessions = SpeakerSessions(max_sessions=100, idle_ttl_s=60.0, clock=lambda: clock[0])
    for i in range(5000):
        with sessions.use(f"caller-{i}") as running:
            running[f"caller-{i}"] = Moments.of(np.full((1, 8), float(i)))
    assert len(sessions) == 100  # the least recently used were forgotten
    assert "caller-0" not in sessions and "caller-4999" in sessions
    with sessions.use("caller-4900") as running:  # used again: most recent now
        assert running["caller-4900"].count == 1
    clock[0] = 61.0
    assert len(sessions) == 0  # idle past the TTL


def test_a_session_in_use_is_neither_evicted_nor_expired():
    """A request still scoring a session's clips keeps it: evicting it then would add those
    clips to statistics nobody keeps, and the session's next request would start over."""
    clock = [0.0]
    sessions = SpeakerSessions(max_sessions=2, idle_ttl_s=60.0, clock=lambda: clock[0])
    with sessions.use("busy") as running:
        running["busy"] = Moments.of(np.ones((3, 4)))
        for i in range(5):  # crowd it out while it is held
            with sessions.use(f"other-{i}"):
                pass
        clock[0] = 120.0  # and let it idle past the TTL, still held
        assert "busy" in sessions
    assert "busy" in sessions  # released just now: not idle
    with sessions.use("busy") as running:
        assert running["busy"].count == 3
    assert len(sessions) <= 2  # the bound holds again once nobody holds the extra


def test_many_speakers_through_the_service_evict_the_oldest(bundle, work):
    table = work[1]
    clip, text = table["audio"][0], table["text"][0]
    sessions = SpeakerSessions(max_sessions=20)
    with TestClient(_app(bundle, sessions)) as client:
        for i in range(60):
            response = client.post("/predict", files=_files([clip]),
                                   data={"text": text, "speaker": f"s{i}"})  # fmt: skip
            assert response.json()["speaker_clips"] == 1
        assert client.get("/health").json()["speaker_sessions"] == 20
        assert client.delete("/speakers/s0").status_code == 404  # evicted
        assert client.delete("/speakers/s59").status_code == 200


def test_one_session_from_many_threads_counts_every_clip_once(bundle, work):
    table = work[1]
    rows = table.head(4)
    sessions = SpeakerSessions()
    errors = []

    def worker() -> None:
        try:
            for _ in range(3):
                with sessions.use("shared") as running:
                    bundle.predict(list(rows["audio"]), list(rows["text"]), speaker="shared",
                                   running_stats=running)  # fmt: skip
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sessions.use("shared") as running:
        stats = running["shared"]
    assert stats.count == 4 * 3 * len(rows)
    x = speech_vectors(bundle, list(rows["audio"]))
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-6)


def test_the_schema_documents_the_speaker_field_and_delete(bundle):
    with TestClient(_app(bundle)) as client:
        schema = client.get("/openapi.json").json()
    assert "delete" in schema["paths"]["/speakers/{speaker_id}"]
    assert "speaker_clips" in schema["components"]["schemas"]["PredictionOut"]["properties"]
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "speaker" in schema["components"]["schemas"][ref]["properties"]


def test_forgetting_a_session_needs_the_token_like_predicting(bundle, work, caplog, monkeypatch):
    import logging
    import secrets

    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.tokens import Tokens

    token = "t" * 8 + secrets.token_urlsafe(16)
    table = work[1]
    sessions = SpeakerSessions()
    app = create_app(
        bundle, limits=ServeLimits(), warm=False, speaker_sessions=sessions,
        security=SecuritySettings(tokens=Tokens([token])),
    )  # fmt: skip
    # an earlier test may have configured the service's logging (level, propagation)
    monkeypatch.setattr(logging.getLogger("emofuse"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("emofuse.serve.access"), "disabled", False)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="emofuse")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        data = {"text": table["text"][0], "speaker": "agent"}
        assert (
            client.post("/predict", files=_files(table["audio"][:1]), data=data).status_code == 401
        )
        answer = client.post("/predict", files=_files(table["audio"][:1]), data=data,
                             headers=headers)  # fmt: skip
        assert answer.json()["speaker_clips"] == 1
        assert client.delete("/speakers/agent").status_code == 401
        assert "agent" in sessions
        assert client.delete("/speakers/agent", headers=headers).status_code == 200
        assert "agent" not in sessions
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("emofuse"))
    assert "DELETE /speakers/{speaker_id} 200" in server_log  # the route, never the id
    assert "agent" not in server_log
