"""The service on a shared network (issue 16): bearer tokens on every route the OpenAPI
schema lists, refusing an open bind, privacy of uploads and transcripts (never on disk or in
any log), hardening headers, same-origin by default, per-client rate limits, bounded
connections, TLS. A toy-encoder bundle keeps it fast and independent of real data."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient
from support.requirements import need_openssl
from support.toy_bundle import train_toy_bundle

from emofuse.serve import ServeLimits, create_app
from emofuse.serve.security import SecuritySettings, install_security
from emofuse.serve.tokens import TOKEN_ENV, TokenError, Tokens, load_tokens

TESTS = Path(__file__).parent
TOKEN_A = "a" * 8 + secrets.token_urlsafe(16)
TOKEN_B = "b" * 8 + secrets.token_urlsafe(16)
STATIC = Path(__file__).parents[1] / "emofuse" / "serve" / "static"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return train_toy_bundle(tmp_path_factory.mktemp("toy-bundle"))


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    from emofuse.bundle import Bundle

    return Bundle.load(bundle_dir)


def make_app(bundle, settings: SecuritySettings, limits: ServeLimits | None = None):
    """The real app with the security layer: through ``create_app(security=)`` where it
    exists, else wrapped afterwards (the same middleware either way)."""
    limits = limits or ServeLimits(max_audio_s=30)
    if "security" in inspect.signature(create_app).parameters:
        return create_app(bundle, limits=limits, security=settings)
    app = create_app(bundle, limits=limits)
    install_security(app, settings)
    return app


def secured(bundle, **overrides):
    settings = SecuritySettings(tokens=Tokens([TOKEN_A, TOKEN_B]), **overrides)
    return TestClient(make_app(bundle, settings))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wav(seconds: float = 0.5, rate_hz: int = 16_000, subtype: str = "FLOAT") -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate_hz,
             format="WAV", subtype=subtype)  # fmt: skip
    return buffer.getvalue()


def operations(schema: dict) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


# ---------------------------------------------------------------- tokens


def test_every_route_in_the_schema_needs_a_token(bundle):
    client = secured(bundle)
    schema = client.get("/openapi.json", headers=auth(TOKEN_A)).json()
    ops = operations(schema)
    assert ("POST", "/predict") in ops and ("GET", "/labels") in ops  # the list is real
    for method, path in ops:
        if (method, path) == ("GET", "/health"):
            continue
        missing = client.request(method, concrete(path))
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = client.request(method, concrete(path), headers=auth(TOKEN_A[:-1] + "Z"))
        assert wrong.status_code == 401, (method, path)
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        basic = client.request(method, concrete(path), headers={"Authorization": "Basic eDp5"})
        assert basic.status_code == 401
    # The schema itself and unknown paths are not open either.
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/no-such-route").status_code == 401


def test_health_without_a_token_says_alive_and_nothing_more(bundle):
    client = secured(bundle)
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health", headers=auth("x" * 30)).json() == {"status": "ok"}
    full = client.get("/health", headers=auth(TOKEN_B)).json()
    assert full["labels"] == list(bundle.labels)


def test_each_of_two_tokens_is_accepted(bundle):
    client = secured(bundle)
    for token in (TOKEN_A, TOKEN_B):
        assert client.get("/labels", headers=auth(token)).status_code == 200
        answer = client.post(
            "/predict",
            headers=auth(token),
            files={"audio": ("clip.wav", wav(), "audio/wav")},
            data={"text": "what a lovely day"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] in bundle.labels


def test_the_page_shell_is_public_and_the_schema_declares_the_token(bundle):
    client = secured(bundle)
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json", headers=auth(TOKEN_A)).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    assert "401" in schema["paths"]["/predict"]["post"]["responses"]


def test_token_file_is_reread_so_a_token_can_be_rotated(tmp_path, monkeypatch):
    import emofuse.serve.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_EVERY_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text(f"# lab tokens\n{TOKEN_A}\n\n{TOKEN_B}\n")
    tokens = Tokens.from_file(path)
    assert tokens.match(TOKEN_A) and tokens.match(TOKEN_B)
    assert tokens.match(TOKEN_A) != tokens.match(TOKEN_B)
    assert tokens.match(TOKEN_A + "x") is None and tokens.match("") is None
    path.write_text(f"{TOKEN_B}\n")  # A retired, B still valid: no restart, no downtime
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert tokens.match(TOKEN_A) is None and tokens.match(TOKEN_B)
    path.write_text(f"{TOKEN_B}\n{TOKEN_A[:5]}")  # a write in progress keeps the last good ones
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert tokens.match(TOKEN_B) and tokens.match(TOKEN_A) is None


def _touch(path: Path, step: int) -> None:
    os.utime(path, ns=(time.time_ns(), time.time_ns() + step * 10**9))


@pytest.mark.parametrize("revoke", ["comments only", "blank", "deleted"])
def test_emptying_or_deleting_the_token_file_revokes_every_token(
    tmp_path, monkeypatch, caplog, revoke
):
    """Fail closed: no token left means every request gets 401, not the old tokens."""
    import emofuse.serve.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_EVERY_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN_A}\n{TOKEN_B}\n")
    tokens = Tokens.from_file(path)
    app = create_app(_StubModel(), warm=False, security=SecuritySettings(tokens=tokens))
    client = TestClient(app)
    assert client.get("/labels", headers=auth(TOKEN_A)).status_code == 200
    if revoke == "deleted":
        path.unlink()
    else:
        path.write_text(f"# {TOKEN_A}\n# retired\n" if revoke == "comments only" else "\n")
        _touch(path, 1)
    with caplog.at_level("ERROR", logger="emofuse.serve"):
        for token in (TOKEN_A, TOKEN_B):
            assert client.get("/labels", headers=auth(token)).status_code == 401
    assert any(r.levelname == "ERROR" for r in caplog.records)
    path.write_text(f"{TOKEN_B}\n")  # a new token file brings service back
    _touch(path, 2)
    assert client.get("/labels", headers=auth(TOKEN_B)).status_code == 200
    assert client.get("/labels", headers=auth(TOKEN_A)).status_code == 401


def test_an_unreadable_token_file_keeps_the_tokens_and_logs_an_error(tmp_path, monkeypatch, caplog):
    import emofuse.serve.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_EVERY_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN_A}\n")
    tokens = Tokens.from_file(path)
    path.write_bytes(b"\xff\xfe not utf-8")  # a transient problem, not a revocation
    _touch(path, 1)
    with caplog.at_level("ERROR", logger="emofuse.serve"):
        assert tokens.match(TOKEN_A)
    assert [r.levelname for r in caplog.records if r.name == "emofuse.serve"] == ["ERROR"]
    path.write_text(f"{TOKEN_B}\n")  # retried at the next check: the stamp was not kept
    _touch(path, 2)
    assert tokens.match(TOKEN_B) and tokens.match(TOKEN_A) is None


class _StubModel:
    labels = ["calm", "tense"]
    modality = "text"
    needs_text, needs_audio = True, False

    def predict(self, audio, texts=None, *, asr=None):
        raise AssertionError("not called")


def test_security_is_installed_even_when_a_module_lookup_fails(monkeypatch):
    """Asked for a token, the service never serves without one (no fail-open)."""
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    app = create_app(_StubModel(), warm=False, security=SecuritySettings(tokens=Tokens([TOKEN_A])))
    client = TestClient(app)
    assert client.get("/labels").status_code == 401
    assert client.get("/labels", headers=auth(TOKEN_A)).status_code == 200


def test_a_missing_security_module_stops_the_start_not_the_protection(monkeypatch):
    monkeypatch.setitem(sys.modules, "emofuse.serve.security", None)  # import fails
    with pytest.raises(ImportError):
        create_app(_StubModel(), warm=False, security=object())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no token"),
        ("short\n", "line 1: token of 5 characters"),
        ("# c\nhas space inside it ok\n", "line 2: a token may only hold"),
    ],
)
def test_bad_token_files_are_named_with_the_line(tmp_path, content, message):
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    with pytest.raises(TokenError, match=message) as err:
        Tokens.from_file(path)
    assert str(path) in str(err.value)


def test_tokens_from_the_environment():
    assert load_tokens(None, {}) is None
    tokens = load_tokens(None, {TOKEN_ENV: f"{TOKEN_A}, {TOKEN_B}"})
    assert len(tokens) == 2 and tokens.match(TOKEN_B)
    with pytest.raises(TokenError, match=TOKEN_ENV):
        load_tokens(None, {TOKEN_ENV: "tooshort"})


# ---------------------------------------------------------------- binding


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "lab.example.org"])
def test_a_public_address_without_a_token_is_refused(host, tmp_path, capsys, monkeypatch):
    from emofuse.cli import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["serve", str(tmp_path / "bundle"), "--host", host]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--token-file" in err and "--allow-unauthenticated" in err and host in err


def test_loopback_explicit_opt_out_or_a_token_gets_past_the_check(tmp_path, capsys, monkeypatch):
    from emofuse.cli import main
    from emofuse.cli.serve import is_loopback

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    missing = str(tmp_path / "no-bundle")
    for args in (
        ["--host", "127.0.0.1"],
        ["--host", "localhost"],
        ["--host", "::1"],
        ["--host", "0.0.0.0", "--allow-unauthenticated"],
    ):
        assert main(["serve", missing, *args]) == 2
        assert "no such bundle directory" in capsys.readouterr().err  # past the check
    monkeypatch.setenv(TOKEN_ENV, TOKEN_A)
    assert main(["serve", missing, "--host", "0.0.0.0"]) == 2
    assert "no such bundle directory" in capsys.readouterr().err
    assert not is_loopback("0.0.0.0") and is_loopback("127.8.9.10")


def test_settings_errors_name_the_flag(tmp_path, capsys, monkeypatch):
    from emofuse.cli import main

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    (tmp_path / "good").write_text(TOKEN_A)
    (tmp_path / "good").chmod(0o644)
    assert main(["serve", str(tmp_path / "nothing"), "--token-file", str(tmp_path / "good")]) == 2
    assert "can be read by other users" in capsys.readouterr().err
    (tmp_path / "good").chmod(0o600)
    assert main(["serve", str(tmp_path / "nothing"), "--token-file", str(tmp_path / "good")]) == 2
    assert "can be read" not in capsys.readouterr().err
    (tmp_path / "t").write_text("tiny\n")
    assert main(["serve", str(tmp_path), "--token-file", str(tmp_path / "t")]) == 2
    assert "--token-file" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--rate-burst", "0"]) == 2
    assert "--rate-burst must be at least 1" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--ssl-certfile", str(tmp_path / "t")]) == 2
    assert "--ssl-certfile and --ssl-keyfile go together" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--cors-origin", "lab.example.org"]) == 2
    assert "--cors-origin" in capsys.readouterr().err


# ---------------------------------------------------------------- rate limit


def test_a_burst_gets_429_with_retry_after_per_client(bundle):
    client = secured(bundle, rate_per_minute=60, rate_burst=5)
    codes = [client.get("/labels", headers=auth(TOKEN_A)).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}
    limited = client.get("/labels", headers=auth(TOKEN_A))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert "too many requests" in limited.json()["detail"]
    # Another client (token) is not held back by the first one's burst.
    assert client.get("/labels", headers=auth(TOKEN_B)).status_code == 200
    # Guessing tokens from one address is limited as well.
    guesses = [client.get("/labels", headers=auth("g" * 20)).status_code for _ in range(7)]
    assert 401 in guesses and guesses[-1] == 429


def test_rate_limiter_refills_and_forgets_old_clients():
    from emofuse.serve.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    now[0] = 1.0
    assert limiter.take("a") == 0.0
    for key in "bcdef":
        limiter.take(key)
    assert len(limiter._buckets) == 3


# ---------------------------------------------------------------- browser hardening


def test_every_answer_carries_the_hardening_headers(bundle):
    client = secured(bundle)
    for response in (
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/health"),
        client.get("/labels"),
        client.get("/labels", headers=auth(TOKEN_A)),
        client.post("/predict", headers=auth(TOKEN_A)),
    ):
        headers = response.headers
        assert headers["Cache-Control"] == "no-store", response.url
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp


@pytest.mark.parametrize("page", ["index.html", "docs.html"])
def test_pages_have_no_inline_script_or_style(page):
    html = (STATIC / page).read_text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I)  # no onclick= etc.
    assert not re.search(r"\sstyle\s*=", html, flags=re.I) and "<style" not in html
    assert "javascript:" not in html


def test_the_page_keeps_the_token_in_memory_only():
    script = (STATIC / "app.js").read_text() + (STATIC / "docs.js").read_text()
    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in script


def test_same_origin_by_default_and_cors_for_allowed_sites(bundle):
    client = secured(bundle)
    same = client.get("/labels", headers={**auth(TOKEN_A), "Origin": "http://testserver"})
    assert same.status_code == 200
    foreign = client.post("/predict", headers={**auth(TOKEN_A), "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "--cors-origin" in foreign.json()["detail"]
    assert "access-control-allow-origin" not in foreign.headers

    client = secured(bundle, cors_origins=("https://lab.example.org",))
    preflight = client.options(
        "/predict",
        headers={
            "Origin": "https://lab.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204  # no token needed for the browser's preflight
    assert preflight.headers["access-control-allow-origin"] == "https://lab.example.org"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    allowed = client.get("/labels", headers={**auth(TOKEN_A), "Origin": "https://lab.example.org"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example.org"
    refused = client.get("/labels", headers={**auth(TOKEN_A), "Origin": "https://other.org"})
    assert refused.status_code == 403


# ---------------------------------------------------------------- privacy, in process


def test_large_uploads_stay_in_memory(bundle, monkeypatch):
    """Starlette spools uploads over 1 MB to a temporary file; a voice must not."""

    def no_disk(self):
        raise AssertionError("an upload was spooled to a temporary file")

    client = secured(bundle)
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    big = wav(seconds=12, rate_hz=48_000, subtype="PCM_16")  # about 1.1 MB
    assert len(big) > 1024 * 1024
    answer = client.post(
        "/predict",
        headers=auth(TOKEN_A),
        files={"audio": ("big.wav", big, "audio/wav")},
        data={"text": "this is great"},
    )
    assert answer.status_code == 200, answer.text


def test_access_log_holds_method_route_status_size_latency_only(bundle, caplog):
    client = secured(bundle)
    secret = "zq" + secrets.token_hex(6)
    with caplog.at_level("DEBUG"):
        client.post(
            f"/predict?{secret}=1",
            headers=auth(TOKEN_A),
            files={"audio": (f"{secret}.wav", wav(), "audio/wav")},
            data={"text": f"say {secret} now"},
        )
        client.get(f"/static/{secret}.js")
        client.get(f"/{secret}", headers=auth(TOKEN_A))
    lines = [r.getMessage() for r in caplog.records if r.name == "emofuse.serve.access"]
    assert lines[0].startswith("POST /predict 200 ")
    assert lines[1].startswith("GET /static/{path} 404 ")
    assert lines[2].startswith("GET - 404 ")
    for line in lines:
        assert re.fullmatch(r"[A-Z]+ \S+ \d{3} \d+B \d+\.\dms", line), line
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]  # not the client's
    everything = "\n".join(r.getMessage() for r in server_side)
    assert secret not in everything and TOKEN_A not in everything


# ---------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1, verify=False).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer at {url} within {timeout_s} s")


def files_holding(folder: Path, needles: list[bytes], since: float) -> list[str]:
    """Files under ``folder`` changed since ``since`` that hold any of ``needles``."""
    hits = []
    for root, _dirs, names in os.walk(folder, onerror=lambda err: None):
        for name in names:
            path = Path(root) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if not path.is_file() or info.st_mtime < since or info.st_size > 200 * 2**20:
                    continue
                data = path.read_bytes()
                if any(n in data for n in needles) or any(n in name.encode() for n in needles):
                    hits.append(str(path))
    return hits


@pytest.mark.parametrize("log_level", ["debug", "info"])
def test_a_request_leaves_no_transcript_or_file_name_in_logs_or_on_disk(
    bundle_dir, tmp_path, log_level
):
    started = time.time() - 1
    work, server_tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    server_tmp.mkdir()
    (work / "tokens").write_text(f"{TOKEN_A}\n")
    name = f"voice-{secrets.token_hex(8)}"
    transcript = f"my secret diary {secrets.token_hex(8)} entry"
    needles = [name.encode(), transcript.encode(), transcript.split()[3].encode()]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "EMOFUSE_PLUGINS": "support.toy_encoders",
        "TMPDIR": str(server_tmp),
    }
    env.pop(TOKEN_ENV, None)
    command = [sys.executable, "-m", "emofuse", "serve", str(bundle_dir), "--port", str(port),
               "--token-file", "tokens", "--log-level", log_level]  # fmt: skip
    output = tmp_path / "server-output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=sink, stderr=sink)
        try:
            wait_for_server(url, process)
            headers = auth(TOKEN_A)
            big = wav(seconds=12, rate_hz=48_000, subtype="PCM_16")  # over the 1 MB spool
            one = httpx.post(
                f"{url}/predict",
                headers=headers,
                files={"audio": (f"{name}.wav", big, "audio/wav")},
                data={"text": transcript},
                timeout=60,
            )
            assert one.status_code == 200, one.text
            assert one.json()["text"] == transcript  # it did reach the model
            batch = httpx.post(
                f"{url}/predict/batch",
                headers=headers,
                files=[("audio", (f"{name}-{i}.wav", wav(), "audio/wav")) for i in range(2)],
                data={"texts": [transcript, transcript]},
                timeout=60,
            )
            assert batch.status_code == 200, batch.text
            bad = httpx.post(  # an error naming the file goes to the client, not the log
                f"{url}/predict",
                headers=headers,
                files={"audio": (f"{name}.wav", b"RIFF0000WAVEnot audio", "audio/wav")},
                data={"text": transcript},
                timeout=60,
            )
            assert bad.status_code in (415, 422) and name in bad.text
            srt = f"1\n00:00:00,500 --> 00:00:04,000\n{transcript}\n".encode()
            timeline = httpx.post(  # a recording and its transcript: read from memory only
                f"{url}/timeline",
                headers=headers,
                files={
                    "audio": (f"{name}.wav", big, "audio/wav"),
                    "transcript": (f"{name}.srt", srt, "text/plain"),
                },
                timeout=120,
            )
            assert timeline.status_code == 200, timeline.text
            assert timeline.json()["summary"]["recording"]["path"] == f"{name}.wav"
            httpx.get(f"{url}/{name}?q={transcript}", headers=headers, timeout=10)
        finally:
            process.terminate()
            process.wait(timeout=30)
    log = output.read_bytes()
    print(log.decode(errors="replace"))
    for needle in needles:
        assert needle not in log, f"{needle!r} in the server's output at {log_level}"
    assert TOKEN_A.encode() not in log
    assert b"POST /predict 200" in log and b"GET - 404" in log  # the access log was on
    assert b"POST /timeline 200" in log
    leaked = []
    for folder in (work, server_tmp, Path(tempfile.gettempdir()), Path.cwd()):
        leaked += files_holding(folder, needles, since=started)
    leaked = [p for p in leaked if not p.startswith(str(tmp_path / "server-output"))]
    assert not leaked, f"the request left traces in {leaked}"


@contextlib.contextmanager
def threaded_server(app, **settings) -> Iterator[tuple[str, int]]:
    import uvicorn

    from emofuse.serve.server import ServerSettings, uvicorn_config

    port = free_port()
    config = uvicorn_config(app, ServerSettings(port=port, log_level="warning", **settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_idle_and_half_sent_connections_are_closed(bundle):
    app = make_app(bundle, SecuritySettings(tokens=Tokens([TOKEN_A]), body_idle_timeout_s=0.5))
    with threaded_server(app, header_timeout_s=0.5, keep_alive_timeout_s=1) as address:
        idle = socket.create_connection(address)
        half = socket.create_connection(address)
        half.sendall(b"GET /labels HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        assert closed_within(idle, 5) and closed_within(half, 5)

        body = socket.create_connection(address)
        body.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN_A.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000\r\n\r\n--b\r\n"
        )
        body.settimeout(5)
        answer = body.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        for sock in (idle, half, body):
            sock.close()


def test_the_connection_limit_answers_503(bundle):
    app = make_app(bundle, SecuritySettings(tokens=Tokens([TOKEN_A])))
    with threaded_server(app, max_connections=2, header_timeout_s=5) as (host, port):
        holders = [socket.create_connection((host, port)) for _ in range(2)]
        time.sleep(0.2)
        answer = httpx.get(f"http://{host}:{port}/health", timeout=5)
        assert answer.status_code == 503
        for sock in holders:
            sock.close()


def test_tls_with_a_certificate_and_key(bundle, tmp_path):
    openssl = need_openssl()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    app = make_app(bundle, SecuritySettings(tokens=Tokens([TOKEN_A])))
    with threaded_server(app, ssl_certfile=cert, ssl_keyfile=key) as (host, port):
        answer = httpx.get(f"https://{host}:{port}/labels", headers=auth(TOKEN_A), verify=False)
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{host}:{port}/labels", headers=auth(TOKEN_A), timeout=5)


# ---------------------------------------------------------------- schemathesis, with a token


def test_generated_requests_with_the_token_get_no_server_error(bundle):
    """Schemathesis from the secured app's own schema: no 5xx with the token supplied,
    answers match the documented shapes, and (its ignored_auth check) the declared token
    really is enforced."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        positive_data_acceptance,
    )

    limits = ServeLimits(max_body_bytes=256 * 1024, max_audio_s=5.0, max_batch_files=3)
    security = SecuritySettings(tokens=Tokens([TOKEN_A]), rate_per_minute=0)
    app = make_app(bundle, security, limits)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth(TOKEN_A))
    for operation in schema.get_all_operations():
        strategy = operation.ok().as_strategy()

        @given(case=strategy)
        @settings(max_examples=10, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            response = case.call_and_validate(
                headers=auth(TOKEN_A),
                excluded_checks=[positive_data_acceptance, negative_data_rejection],
            )
            assert response.status_code < 500, response.text
            assert response.status_code != 401, response.text  # the token was sent

        check()


def test_a_local_server_without_a_token_answers_localhost_names_only(bundle):
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 must not reach the service."""
    client = TestClient(make_app(bundle, SecuritySettings(local_hosts_only=True)))
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert client.get("/labels", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example:8000", "192.168.1.5:8000", "127.0.0.1.evil.example"):
        refused = client.get("/labels", headers={"Host": host})
        assert refused.status_code == 403, host
        assert "--token-file" in refused.json()["detail"]


def test_logged_tracebacks_keep_frames_but_not_messages():
    """A 500's traceback is logged; its message may quote a transcript, so it is withheld."""
    import logging

    from emofuse.serve.logging import PrivateFormatter, log_config

    assert log_config("debug")["formatters"]["plain"]["()"] is PrivateFormatter
    secret = "zq" + secrets.token_hex(6)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrivateFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("emofuse.test-private-formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            try:
                raise KeyError(f"text {secret}")
            except KeyError as inner:
                raise ValueError(f"cannot encode {secret!r}") from inner
        except ValueError:
            logger.exception("unexpected error on POST /predict")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "unexpected error on POST /predict" in text
    assert "builtins.ValueError (message withheld" in text and "builtins.KeyError" in text
    assert "test_serve_security.py" in text  # the frames are still there
    assert secret not in text
