"""The prediction service under a real uvicorn server on localhost: concurrent good and
bad requests, oversized bodies on the wire, and the busy (503) path."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support.serve_support import live_server, load_toy_bundle, tone, toy_clip, wav_bytes

from emofuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(
    max_body_bytes=1024 * 1024,
    max_audio_s=8.0,
    max_batch_files=4,
    max_in_flight=2,
    queue_timeout_s=30.0,
)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_toy_bundle(tmp_path_factory, "speech")


@pytest.fixture(scope="module")
def server(predictor):
    with live_server(create_app(predictor, limits=LIMITS)) as url:
        yield url


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "heldout.wav"
    path.write_bytes(wav_bytes(toy_clip("sad", 0.7, seed=42)))
    return path, path.read_bytes()


def test_concurrent_valid_and_invalid_requests(server, predictor, clip):
    path, data = clip
    (expected,) = predictor.predict([path])
    cases = {
        "good": (
            "/predict",
            {"files": {"audio": ("good.wav", data, "audio/wav")}},
            200,
        ),
        "corrupt": (
            "/predict",
            {"files": {"audio": ("bad.wav", b"RIFF....WAVEjunk" * 8, "audio/wav")}},
            422,
        ),
        "empty": ("/predict", {"files": {"audio": ("e.wav", b"", "audio/wav")}}, 422),
        "long": (
            "/predict",
            {"files": {"audio": ("l.wav", wav_bytes(tone(LIMITS.max_audio_s + 1)), "audio/wav")}},
            413,
        ),
        "missing": ("/predict", {"data": {"text": "hallo"}}, 422),
        "batch": (
            "/predict/batch",
            {
                "files": [
                    ("audio", ("a.wav", data, "audio/wav")),
                    ("audio", ("b.wav", b"nope", "audio/wav")),
                ]
            },
            200,
        ),
    }
    order = list(cases) * 5  # 30 requests, 8 at a time

    def send(name):
        route, kwargs, _ = cases[name]
        with httpx.Client(base_url=server, timeout=60) as client:
            return name, client.post(route, **kwargs)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, order))

    assert len(answers) == len(order)
    for name, response in answers:
        assert response.status_code == cases[name][2], (name, response.text)
        body = response.json()
        if name == "good":
            assert body["label"] == expected.label
            assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-4)
        elif name == "batch":
            assert [item["status"] for item in body] == [200, 415]  # b"nope": no known format
            assert body[0]["result"]["label"] == expected.label
        else:
            assert isinstance(body["detail"], str) and body["detail"]
    health = httpx.get(f"{server}/health").json()
    assert health["in_flight"] == 0


def _raw_request(url: str, head: bytes, body: bytes) -> bytes:
    """Send raw bytes; a server that waits for more body makes recv time out (an error)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_1gb_content_length_is_refused_without_reading(server):
    """The server answers 413 from the header alone: the client sends only a few bytes
    of its 'gigabyte', so a server that waited for the body would time out."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: 1073741824\r\n\r\n"
    )
    answer = _raw_request(server, head, b"--xyz\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than the server's limit" in answer


def test_a_chunked_body_over_the_limit_is_cut_off(server):
    chunk = bytes(64 * 1024)
    n_chunks = 3 * LIMITS.max_body_bytes // len(chunk)

    def body():  # a well-formed multipart file part that never ends
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        for _ in range(n_chunks):
            yield chunk

    try:
        response = httpx.post(
            f"{server}/predict",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
            timeout=30,
        )
    except httpx.TransportError as err:  # the server may close while we still send
        pytest.fail(f"server dropped the connection instead of answering 413: {err!r}")
    assert response.status_code == 413
    assert "larger than the server's limit" in response.json()["detail"]


def test_busy_server_answers_503_with_retry_after(predictor, clip):
    """With one slot and a short queue timeout, a request behind a slow one gets 503."""
    path, data = clip
    entered, release = threading.Event(), threading.Event()

    class Gated:  # the real model, held at the gate so the slot stays taken
        labels, modality = predictor.labels, predictor.modality
        needs_text, needs_audio = predictor.needs_text, predictor.needs_audio

        def predict(self, audio, texts=None, *, asr=None):
            entered.set()
            release.wait(timeout=30)
            return predictor.predict(audio, texts, asr=asr)

    limits = ServeLimits(max_in_flight=1, queue_timeout_s=0.3, retry_after_s=7)
    app = create_app(Gated(), limits=limits, warm=False)
    files = {"audio": ("good.wav", data, "audio/wav")}
    with live_server(app) as url, ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(httpx.post, f"{url}/predict", files=files, timeout=60)
        assert entered.wait(timeout=30)
        assert httpx.get(f"{url}/health").json()["in_flight"] == 1
        second = httpx.post(f"{url}/predict", files=files, timeout=30)
        release.set()
        first_response = first.result(timeout=60)
    assert second.status_code == 503
    assert second.headers["retry-after"] == "7"
    assert "server busy" in second.json()["detail"]
    assert first_response.status_code == 200
    assert first_response.json()["label"] == predictor.predict([path])[0].label


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    from emofuse.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert main(["serve", str(tmp_path), "--workers-in-flight", "0"]) == 2
    errors = capsys.readouterr().err
    assert "nope: no such bundle directory" in errors
    assert "--workers-in-flight must be at least 1, not 0" in errors


@pytest.mark.slow
def test_cli_serves_a_bundle(emodb_dir, tmp_path_factory):
    """`emofuse serve BUNDLE` in its own process: loads, warms up, answers, stops."""
    import subprocess
    import sys

    from support.serve_support import free_port, heldout_clip, train_bundle

    bundle_dir = train_bundle(emodb_dir, tmp_path_factory, "speech")
    port = free_port()
    command = [sys.executable, "-m", "emofuse", "serve", str(bundle_dir), "--port", str(port)]
    command += ["--max-body-mb", "0.5", "--workers-in-flight", "1", "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "emofuse serve did not come up in 180 s"
                time.sleep(0.5)
        assert health["max_in_flight"] == 1 and health["max_body_bytes"] == 512 * 1024
        data = heldout_clip(emodb_dir).read_bytes()
        response = httpx.post(f"{url}/predict", files={"audio": ("c.wav", data)}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["label"] in health["labels"]
        big = httpx.post(f"{url}/predict", files={"audio": ("b.wav", bytes(600_000))}, timeout=60)
        assert big.status_code == 413
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"serving {bundle_dir}" in output


def test_work_in_flight_never_exceeds_the_bound(predictor, clip):
    """Eight clients at once, two slots: exactly two predictions run at a time."""
    _, data = clip
    lock = threading.Lock()
    running, peak = 0, 0

    class Counting:  # the real model, slowed a little so requests overlap
        labels, modality = predictor.labels, predictor.modality
        needs_text, needs_audio = predictor.needs_text, predictor.needs_audio

        def predict(self, audio, texts=None, *, asr=None):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                time.sleep(0.2)
                return predictor.predict(audio, texts, asr=asr)
            finally:
                with lock:
                    running -= 1

    limits = ServeLimits(max_in_flight=2, queue_timeout_s=60)
    app = create_app(Counting(), limits=limits, warm=False)
    files = {"audio": ("good.wav", data, "audio/wav")}
    with live_server(app) as url, ThreadPoolExecutor(max_workers=8) as pool:
        futures = [
            pool.submit(httpx.post, f"{url}/predict", files=files, timeout=120) for _ in range(8)
        ]
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 8
    assert peak == 2
