"""The labelling API (`emofuse label`, issue 25): next / audio / label / undo / skip over a
pool, answers appended to answers.csv at once and read back on start (resume), hostile ids
and labels, named annotators from the token file, a kill during a write, a text-only pool,
and a server that writes nothing but answers.csv."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient
from support.serve_support import free_port, live_server

from emofuse.cli import main
from emofuse.corpus.answers import append_answer, read_answers, resolve_answers
from emofuse.corpus.pool import read_pool
from emofuse.labelling.app import create_label_app
from emofuse.labelling.desk import LabellingDesk
from emofuse.labelling.label_set import LabelSetError, read_label_set
from emofuse.serve.security import SecuritySettings
from emofuse.serve.tokens import TokenError, Tokens, bare_token_name

LABELS = "calm,tense,sad"
TEXTS = (
    "오늘 정말 기분이 좋아요",
    "the train was late again",
    "nobody called back",
    "fine, thanks",
)
TOKEN_ALICE = "alice-" + secrets.token_urlsafe(16)
TOKEN_BOB = "bob-" + secrets.token_urlsafe(16)
TOKEN_BARE = "bare-" + secrets.token_urlsafe(16)
LOCAL = "http://localhost"  # a loopback Host: a server without tokens answers only those


def make_pool(folder: Path, n: int = 4) -> Path:
    """A pool manifest of ``n`` short tones with transcripts and no label column."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["audio,text,speaker"]
    for i in range(n):
        t = np.arange(8000) / 16000
        sf.write(folder / f"clip{i}.wav", (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)), 16000)
        lines.append(f'clip{i}.wav,"{TEXTS[i % len(TEXTS)]}",spk{i % 2}')
    (folder / "pool.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "pool.csv"


def make_desk(pool: Path, answers: Path, labels: str = LABELS) -> LabellingDesk:
    return LabellingDesk(read_pool(pool), read_label_set(labels), answers)


def client_for(desk: LabellingDesk, tokens: Tokens | None = None, **kw) -> TestClient:
    security = SecuritySettings(tokens=tokens, local_hosts_only=tokens is None, rate_per_minute=0)
    app = create_label_app(desk, security=security, **kw)
    return TestClient(app, base_url=LOCAL)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def pool(tmp_path) -> Path:
    return make_pool(tmp_path / "pool")


# ---------------------------------------------------------------- the steps


def test_next_audio_label_undo_skip(pool, tmp_path):
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers), annotator="mina")
    first = client.get("/label/next").json()
    assert first["annotator"] == "mina" and first["labels"] == ["calm", "tense", "sad"]
    assert set(first["colours"]) == {"calm", "tense", "sad"}
    clip = first["clip"]
    assert clip["id"] == "clip0" and clip["position"] == 1 and clip["text"] == TEXTS[0]
    assert clip["has_audio"] and clip["duration_s"] == pytest.approx(0.5)
    assert client.get("/label/next").json()["clip"]["id"] == "clip0"  # same until answered

    audio = client.get("/label/audio/clip0")
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/")
    assert audio.content == (pool.parent / "clip0.wav").read_bytes()

    saved = client.post("/label", data={"id": "clip0", "label": "TENSE"})  # folded to the set
    assert saved.status_code == 200
    assert saved.json()["label"] == "tense" and saved.json()["annotator"] == "mina"
    assert [(a.id, a.label, a.annotator) for a in read_answers(answers).answers] == [
        ("clip0", "tense", "mina")
    ]  # on disk before the answer came back
    after = client.get("/label/next").json()
    assert after["clip"]["id"] == "clip1"
    assert after["progress"]["mine"] == {"calm": 0, "tense": 1, "sad": 0}
    assert after["progress"]["answered_by_me"] == 1 and after["last"]["id"] == "clip0"

    assert client.post("/label/skip", data={"id": "clip1"}).status_code == 200
    assert client.get("/label/next").json()["clip"]["id"] == "clip2"
    client.post("/label", data={"id": "clip2", "label": "sad"})

    undone = client.post("/label/undo").json()["undone"]
    assert undone["id"] == "clip2" and undone["action"] == "retract"
    assert client.get("/label/next").json()["clip"]["id"] == "clip2"  # served again at once
    assert resolve_answers(answers).labels == {"clip0": "tense"}
    client.post("/label/undo")
    assert client.post("/label/undo").json()["undone"] is None  # nothing left to undo
    assert resolve_answers(answers).labels == {}

    for ident in ("clip0", "clip2", "clip3"):
        client.post("/label", data={"id": ident, "label": "calm"})
    assert client.get("/label/next").json()["clip"]["id"] == "clip1"  # the skipped one last
    client.post("/label", data={"id": "clip1", "label": "calm"})
    done = client.get("/label/next").json()
    assert done["clip"] is None and done["progress"]["answered_by_me"] == 4


def test_the_api_is_in_the_openapi_schema(pool, tmp_path):
    schema = client_for(make_desk(pool, tmp_path / "a.csv")).get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/label/next", "/label/audio/{id}", "/label", "/label/undo"} <= set(paths)
    form = paths["/label"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in form
    ref = form["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ref]["required"]) == {"id", "label"}


# ---------------------------------------------------------------- hostile input


def test_an_unknown_id_or_label_is_refused_and_nothing_is_written(pool, tmp_path):
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers))
    for data in ({"id": "clip9", "label": "calm"}, {"id": "clip0", "label": "bored"},
                 {"id": "clip0", "label": ""}, {"id": "", "label": "calm"}, {"id": "clip0"}):  # fmt: skip
        answer = client.post("/label", data=data)
        assert answer.status_code in (400, 422), data
        assert "detail" in answer.json()
    assert "field 'label'" in client.post("/label", data={"id": "clip0", "label": "x"}).text
    assert "field 'id'" in client.post("/label", data={"id": "nope", "label": "calm"}).text
    assert client.post("/label/skip", data={"id": "nope"}).status_code == 422
    assert client.get("/label/audio/nope").status_code == 404
    assert not answers.exists()


def test_a_path_in_the_id_never_reaches_the_file_system(pool, tmp_path, monkeypatch):
    secret = tmp_path / "secret.wav"
    secret.write_bytes((pool.parent / "clip0.wav").read_bytes())
    client = client_for(make_desk(pool, tmp_path / "answers.csv"))
    touched: list[str] = []
    real_stat, real_open = os.stat, os.open

    def stat_spy(path, *args, **kwargs):
        touched.append(str(path))
        return real_stat(path, *args, **kwargs)

    def open_spy(path, *args, **kwargs):
        touched.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_spy)
    monkeypatch.setattr(os, "open", open_spy)
    hostile = [
        "..%2Fsecret.wav",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        str(secret).replace("/", "%2F"),
        str(pool.parent / "clip0.wav").replace("/", "%2F"),  # a pool clip, by path
        "clip0%2F..%2F..%2Fsecret.wav",
        "../secret.wav",
    ]
    for ident in hostile:
        answer = client.get(f"/label/audio/{ident}")
        assert answer.status_code == 404, ident
        assert b"RIFF" not in answer.content
    for ident in ("../secret.wav", str(secret), "/etc/passwd"):
        assert client.post("/label", data={"id": ident, "label": "calm"}).status_code == 422
    assert not [p for p in touched if "secret" in p or "passwd" in p or "clip0.wav" in p]
    assert client.get("/label/audio/clip0").status_code == 200  # the spies do see real reads
    assert any(p.endswith("clip0.wav") for p in touched)


# ---------------------------------------------------------------- annotators


def test_named_tokens_keep_both_answers_and_show_agreement(pool, tmp_path):
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# lab\nalice {TOKEN_ALICE}\nbob {TOKEN_BOB}\n{TOKEN_BARE}\n")
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers), Tokens.from_file(token_file))
    assert client.get("/label/next").status_code == 401
    assert client.get("/label/next", headers=auth("x" * 20)).status_code == 401
    assert client.get("/").status_code == 200  # the page shell is public

    alice, bob, bare = auth(TOKEN_ALICE), auth(TOKEN_BOB), auth(TOKEN_BARE)
    assert client.get("/label/next", headers=alice).json()["annotator"] == "alice"
    client.post("/label", data={"id": "clip0", "label": "calm"}, headers=alice)
    client.post("/label", data={"id": "clip1", "label": "sad"}, headers=alice)
    # Bob walks the same order on his own: the clip Alice answered is his next too.
    assert client.get("/label/next", headers=bob).json()["clip"]["id"] == "clip0"
    client.post("/label", data={"id": "clip0", "label": "calm"}, headers=bob)
    client.post("/label", data={"id": "clip1", "label": "tense"}, headers=bob)
    client.post("/label", data={"id": "clip2", "label": "sad"}, headers=bare)

    view = client.get("/label/next", headers=bob).json()
    assert view["last"] == {"id": "clip1", "label": "tense", "others": {"alice": "sad"}}
    progress = view["progress"]
    assert progress["shared"] == 2 and progress["agreeing"] == 1 and progress["ties"] == 1
    assert progress["everyone"] == {"calm": 1, "tense": 0, "sad": 1}
    assert progress["mine"] == {"calm": 1, "tense": 1, "sad": 0}
    # Bob's undo withdraws Bob's answer, never Alice's.
    client.post("/label/undo", headers=bob)
    resolved = resolve_answers(answers)
    assert resolved.by_annotator["clip1"] == {"alice": "sad"}
    assert resolved.by_annotator["clip0"] == {"alice": "calm", "bob": "calm"}
    bare_name = bare_token_name(hashlib.sha256(TOKEN_BARE.encode()).digest())
    assert resolved.by_annotator["clip2"] == {bare_name: "sad"}


def test_two_annotators_at_once_lose_nothing(tmp_path):
    pool = make_pool(tmp_path / "pool", n=25)
    answers = tmp_path / "answers.csv"
    tokens = Tokens([("alice", TOKEN_ALICE), ("bob", TOKEN_BOB)])
    security = SecuritySettings(tokens=tokens, rate_per_minute=0)
    app = create_label_app(make_desk(pool, answers), security=security)
    errors: list[str] = []

    def annotate(token: str, label: str) -> None:
        with httpx.Client(base_url=url, headers=auth(token), timeout=30) as http:
            for _ in range(25):
                ident = http.get("/label/next").json()["clip"]["id"]
                answer = http.post("/label", data={"id": ident, "label": label})
                if answer.status_code != 200:
                    errors.append(answer.text)

    with live_server(app) as url:
        threads = [threading.Thread(target=annotate, args=a)
                   for a in ((TOKEN_ALICE, "calm"), (TOKEN_BOB, "tense"))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    log = read_answers(answers)
    assert log.skipped == [] and len(log.answers) == 50
    resolved = resolve_answers(answers)
    assert len(resolved.by_annotator) == 25
    assert all(by == {"alice": "calm", "bob": "tense"} for by in resolved.by_annotator.values())


def test_token_files_may_name_the_holder_and_stay_compatible(tmp_path, monkeypatch):
    import emofuse.serve.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_EVERY_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN_BARE}\n김민지 {TOKEN_ALICE}\n")
    tokens = Tokens.from_file(path)
    assert tokens.holder(TOKEN_BARE) == bare_token_name(
        hashlib.sha256(TOKEN_BARE.encode()).digest()
    )
    assert tokens.holder(TOKEN_ALICE) == "김민지"
    assert tokens.holder("y" * 20) is None and tokens.match(TOKEN_ALICE)
    path.write_text(f"bob {TOKEN_ALICE}\n")  # the same token, renamed: re-read like a rotation
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert tokens.holder(TOKEN_ALICE) == "bob" and tokens.holder(TOKEN_BARE) is None
    for bad, message in ((f"al/ice {TOKEN_BOB}\n", "line 1: a name may only hold"),
                         (f"a b {TOKEN_BOB}\n", "line 1: a token may only hold"),
                         ("alice short\n", "line 1: token of 5 characters")):  # fmt: skip
        path.write_text(bad)
        with pytest.raises(TokenError, match=message):
            Tokens.from_file(path)


# ---------------------------------------------------------------- resume and kills


def test_a_restarted_server_resumes_where_each_annotator_left_off(pool, tmp_path):
    answers = tmp_path / "answers.csv"
    tokens = Tokens([("alice", TOKEN_ALICE), ("bob", TOKEN_BOB)])
    first = client_for(make_desk(pool, answers), tokens)
    for ident in ("clip0", "clip1"):
        first.post("/label", data={"id": ident, "label": "calm"}, headers=auth(TOKEN_ALICE))
    first.post("/label", data={"id": "clip0", "label": "sad"}, headers=auth(TOKEN_BOB))
    first.post("/label", data={"id": "clip1", "label": "sad"}, headers=auth(TOKEN_BOB))
    first.post("/label/undo", headers=auth(TOKEN_BOB))

    again = client_for(make_desk(pool, answers), tokens)  # a new server on the same file
    alice = again.get("/label/next", headers=auth(TOKEN_ALICE)).json()
    assert alice["clip"]["id"] == "clip2" and alice["progress"]["answered_by_me"] == 2
    assert alice["last"] == {"id": "clip1", "label": "calm", "others": {}}
    bob = again.get("/label/next", headers=auth(TOKEN_BOB)).json()
    assert bob["clip"]["id"] == "clip1" and bob["progress"]["mine"]["sad"] == 1
    again.post("/label/undo", headers=auth(TOKEN_ALICE))  # undo reaches across the restart
    assert again.get("/label/next", headers=auth(TOKEN_ALICE)).json()["clip"]["id"] == "clip1"


def test_a_line_torn_by_a_kill_is_skipped_and_the_answers_stay(pool, tmp_path):
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers))
    client.post("/label", data={"id": "clip0", "label": "calm"})
    client.post("/label", data={"id": "clip1", "label": "tense"})
    append_answer(answers, id="another-pools-clip", label="calm")
    with answers.open("a", encoding="utf-8") as handle:
        handle.write("clip2,sa")  # a write cut by kill -9
    desk = make_desk(pool, answers)
    assert len(desk.skipped_lines) == 1 and desk.foreign_answers == 1
    client = client_for(desk)
    assert client.get("/label/next").json()["clip"]["id"] == "clip2"
    client.post("/label", data={"id": "clip2", "label": "sad"})
    log = read_answers(answers)
    assert [(a.id, a.label) for a in log.answers] == [
        ("clip0", "calm"), ("clip1", "tense"), ("another-pools-clip", "calm"), ("clip2", "sad")
    ]  # fmt: skip
    assert len(log.skipped) == 1


def _start_cli(pool: Path, answers: Path, port: int, workdir: Path, tmpdir: Path):
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    env.pop("EMOFUSE_API_TOKEN", None)
    command = [sys.executable, "-m", "emofuse", "label", str(pool), "-o", str(answers),
               "--label-set", LABELS, "--port", str(port), "--annotator", "mina",
               "--log-level", "debug"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.2)
    process.kill()
    raise AssertionError("emofuse label did not start within 60 s")


def test_kill_9_loses_no_answer_and_the_server_writes_nothing_else(pool, tmp_path):
    """The real command: answers survive kill -9, a restart resumes, and the only file the
    server writes is answers.csv (no temporary files; no clip, text or path in its log)."""
    workdir, tmpdir = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir(), tmpdir.mkdir()
    answers = workdir / "out" / "answers.csv"
    before = {p for p in tmp_path.rglob("*")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = []
    process = _start_cli(pool, answers, port, workdir, tmpdir)
    try:
        for ident, label in (("clip0", "calm"), ("clip1", "sad")):
            saved = httpx.post(f"{base}/label", data={"id": ident, "label": label}, timeout=10)
            assert saved.status_code == 200
        httpx.get(f"{base}/label/audio/clip2", timeout=10)
        httpx.get(f"{base}/label/audio/..%2Fsecret", timeout=10)
    finally:
        process.send_signal(signal.SIGKILL)
        logs.append(process.communicate(timeout=30)[0])
    assert [(a.id, a.label, a.annotator) for a in read_answers(answers).answers] == [
        ("clip0", "calm", "mina"), ("clip1", "sad", "mina")
    ]  # fmt: skip

    process = _start_cli(pool, answers, port, workdir, tmpdir)
    try:
        view = httpx.get(f"{base}/label/next", timeout=10).json()
        assert view["clip"]["id"] == "clip2" and view["progress"]["answered_by_me"] == 2
        assert httpx.get(f"{base}/label/next", headers={"Host": "evil.example"}).status_code == 403
    finally:
        process.terminate()
        logs.append(process.communicate(timeout=30)[0])
    written = {p for p in tmp_path.rglob("*")} - before
    assert written == {answers, answers.parent}
    text = "\n".join(logs)
    assert "GET /label/audio/{id:path} 200" in text  # the access log ran, by route template
    for private in (*TEXTS, "clip0", "clip2", "secret", str(pool.parent), "pool.csv"):
        assert private not in text, private


def test_a_text_only_pool_shows_the_text_and_has_no_audio(tmp_path):
    pool = tmp_path / "sentences.csv"
    pool.write_text("text\n" + "\n".join(f'"{t}"' for t in TEXTS) + "\n", encoding="utf-8")
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers))
    clip = client.get("/label/next").json()["clip"]
    assert clip["text"] == TEXTS[0] and clip["has_audio"] is False
    assert clip["duration_s"] is None
    missing = client.get(f"/label/audio/{clip['id']}")
    assert missing.status_code == 404 and "text-only" in missing.json()["detail"]
    assert client.post("/label", data={"id": clip["id"], "label": "sad"}).status_code == 200
    assert resolve_answers(answers).labels == {clip["id"]: "sad"}


def test_nothing_personal_in_the_logs_and_no_temporary_file(pool, tmp_path, caplog, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    answers = tmp_path / "answers.csv"
    client = client_for(make_desk(pool, answers))
    with caplog.at_level(logging.DEBUG):
        client.get("/label/next")
        client.get("/label/audio/clip0")
        client.post("/label", data={"id": "clip0", "label": "calm"})
        client.post("/label", data={"id": "../../etc/passwd", "label": "calm"})
        client.post("/label/undo")
    assert any(r.name == "emofuse.serve.access" for r in caplog.records)
    server = ("emofuse", "uvicorn", "fastapi", "starlette")  # not the test's own HTTP client
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(server))
    for private in (*TEXTS, "clip0", "passwd", str(pool.parent)):
        assert private not in logged, private
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------- with a bundle


def test_with_a_bundle_the_page_ranks_and_guesses_as_suggest_does(tmp_path):
    from support.toy_bundle import SENTENCES, tone_wav, train_toy_bundle

    from emofuse.active.suggest import suggest
    from emofuse.bundle import Bundle
    from emofuse.labelling.ranking import bundle_order

    bundle = Bundle.load(train_toy_bundle(tmp_path / "toy"))
    folder = tmp_path / "pool"
    folder.mkdir()
    lines = ["audio,text,speaker,label"]
    for i, texts in enumerate(SENTENCES.values()):
        tone_wav(folder / f"c{i}.wav", 0.3, 140 + 90 * i)
        lines.append(f"c{i}.wav,{texts[0]},spk{i},")
    lines.append(f"c0.wav,{texts[1]},spk0,sad")  # already labelled: not offered
    (folder / "pool.csv").write_text("\n".join(lines) + "\n")
    pool = read_pool(folder / "pool.csv")
    order, guesses = bundle_order(bundle, pool, store=tmp_path / "store")
    assert sorted(order) == ["c0", "c1", "c2"]
    ranked = suggest(bundle, pool, 10, store=tmp_path / "store").table
    assert order == ranked["id"].tolist()  # suggest's order, every unlabelled clip
    first, second = order[0], ranked.iloc[1]  # the first is answered below
    top = second["predicted"]

    from emofuse.labels import LabelSet

    desk = LabellingDesk(
        pool, LabelSet(tuple(bundle.labels)), tmp_path / "a.csv", order=order, guesses=guesses
    )
    client = client_for(desk)
    client.post("/label", data={"id": first, "label": "angry"})
    view = client.get("/label/next").json()
    assert view["labels"] == list(bundle.labels) and view["clip"]["id"] == second["id"]
    guess = view["clip"]["guess"]
    assert guess["label"] == top and guess["second"] == second["second"] != top
    assert guess["probability"] == pytest.approx(second["p_predicted"], abs=1e-6)
    assert guess["second_probability"] <= guess["probability"]
    assert view["progress"]["pool_size"] == 3


# ---------------------------------------------------------------- served like serve


def test_the_security_of_serve_applies(pool, tmp_path):
    client = client_for(make_desk(pool, tmp_path / "answers.csv"))
    page = client.get("/")
    assert page.status_code == 200 and "/static/label/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and not re.search(r"\son[a-z]+=", page.text)
    answer = client.get("/label/next")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert client.get("/label/next", headers={"Host": "evil.example"}).status_code == 403
    cross = client.post(
        "/label", data={"id": "clip0", "label": "calm"}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    big = client.post("/label", data={"id": "clip0", "label": "x" * 100_000})
    assert big.status_code == 413
    assert client.get("/static/label/style.css").status_code == 200
    assert client.get("/docs").status_code == 200


def test_label_sets_from_a_list_a_file_or_korean(tmp_path):
    assert read_label_set("korean").names[:2] == ("happy", "anxious")
    assert read_label_set(" calm, Calm ,tense").names == ("calm", "tense")
    listed = tmp_path / "labels.txt"
    listed.write_text("# ours\nfrustrated\nrelieved\n\ncurious\n", encoding="utf-8")
    assert read_label_set(str(listed)).names == ("frustrated", "relieved", "curious")
    with pytest.raises(LabelSetError, match="at least two"):
        read_label_set("calm")


def test_the_command_refuses_what_it_cannot_serve(pool, tmp_path, capsys):
    token_file = tmp_path / "tokens"
    token_file.write_text(f"alice {TOKEN_ALICE}\n")
    token_file.chmod(0o600)
    out = str(tmp_path / "answers.csv")
    cases = [
        (["--label-set", LABELS, "--token-file", str(token_file), "--annotator", "x"],
         "each token names its annotator"),
        (["--label-set", LABELS, "--annotator", "a b"], "a name may only hold"),
        (["--label-set", LABELS, "--host", "0.0.0.0"], "without authentication"),
        ([], "no clip has a label yet"),
        (["--label-set", "calm"], "at least two labels"),
    ]  # fmt: skip
    for extra, message in cases:
        assert main(["label", str(pool), "-o", out, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["label", str(pool), "-o", str(pool), "--label-set", LABELS]) == 2
    assert "also an input" in capsys.readouterr().err
    (tmp_path / "not-answers.csv").write_text("a,b\n1,2\n")
    assert main(["label", str(pool), "-o", str(tmp_path / "not-answers.csv"),
                 "--label-set", LABELS]) == 2  # fmt: skip
    assert "not an answers file" in capsys.readouterr().err
    assert not (tmp_path / "answers.csv").exists()
