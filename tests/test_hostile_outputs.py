"""Hostile inputs, round 2 (issue 22): outputs and answers. A command's output never
destroys an input (a hard link included), never drops a row, never looks whole when the
disk filled up part-way, and is written in the format its name says; the service says
what was wrong (a blank text, an upload that is not a file, headers too large) and never
shows a server path; two runs never fill one encoder folder of a feature store at once;
`prepare` says how many rows it dropped. Each test failed before its fix.

Bounded: toy encoders, tiny clips, one short subprocess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from support.serve_support import TOY_SENTENCES, toy_bundle, toy_clip, wav_bytes

from emofuse.cli import main
from emofuse.corpus.table import write_table

TESTS_DIR = Path(__file__).resolve().parent
TEXTS = list(TOY_SENTENCES.values())


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory) -> Path:
    return toy_bundle(tmp_path_factory, "text")


@pytest.fixture(scope="module")
def speech_bundle(tmp_path_factory) -> Path:
    return toy_bundle(tmp_path_factory, "speech")


@pytest.fixture(scope="module")
def both_app(tmp_path_factory):
    from emofuse.bundle import Bundle
    from emofuse.serve import create_app

    bundle = Bundle.load(toy_bundle(tmp_path_factory, "both"))
    return create_app(bundle, warm=False), bundle


def _text_manifest(path: Path, n: int = 8, *, labels: bool = False) -> Path:
    frame = pd.DataFrame({"text": [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(n)]})
    if labels:
        frame["label"] = [list(TOY_SENTENCES)[i % len(TEXTS)] for i in range(n)]
    frame.to_csv(path, index=False)
    return path


def _one_line_error(err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("emofuse ") and ": error: " in lines[-1], err
    for name in names:
        assert name in lines[-1], err


@contextlib.contextmanager
def _disk_full_above(n_bytes: int):
    """No file of this process grows past ``n_bytes`` (RLIMIT_FSIZE): every write past it
    fails at the OS (EFBIG), whichever library writes, as on a full disk."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


# ------------------------------------------------------------------ 1. hard links
@pytest.mark.parametrize("command", ["predict", "prepare", "split", "sample"])
def test_a_hard_link_to_an_input_is_refused_as_an_output(tmp_path, text_bundle, command, capsys):
    manifest = _text_manifest(tmp_path / "m.csv", 24, labels=True)
    corpus = tmp_path / "corpus.parquet"
    assert main(["prepare", str(manifest), "-o", str(corpus), "--quiet"]) == 0
    split = tmp_path / "split.parquet"
    assert main(["split", str(corpus), "--strategy", "stratified", "-o", str(split)]) == 0
    source = {"predict": manifest, "prepare": manifest, "split": corpus, "sample": split}[command]
    link = tmp_path / f"out{source.suffix}"
    os.link(source, link)
    before = source.read_bytes()
    capsys.readouterr()
    argv = {
        "predict": ["predict", str(text_bundle), "--manifest", str(manifest), "-o", str(link)],
        "prepare": ["prepare", str(manifest), "-o", str(link), "--quiet"],
        "split": ["split", str(corpus), "--strategy", "stratified", "-o", str(link)],
        "sample": ["sample", str(split), "--per-label", "2", "-o", str(link)],
    }[command]
    assert main([*argv, "--no-progress"] if command == "predict" else argv) == 2
    assert source.read_bytes() == before
    _one_line_error(capsys.readouterr().err, "input")


# ------------------------------------------------------------------ 2. blank rows
def test_blank_rows_of_a_manifest_keep_their_place_with_an_error(tmp_path, text_bundle, capsys):
    manifest = tmp_path / "m.csv"
    lines = [TEXTS[1], "", TEXTS[3], '""', '"   "', TEXTS[2]]
    manifest.write_text("text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    result = tmp_path / "p.csv"
    code = main(["predict", str(text_bundle), "--manifest", str(manifest), "-o", str(result),
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    out = pd.read_csv(result, dtype=str, keep_default_na=False)
    assert len(out) == len(lines), out  # every input row gives exactly one output row
    assert code == 1 and "3 of 6 clips predicted, 3 errors" in err
    for k in (0, 2, 5):
        assert out.loc[k, "predicted"] and not out.loc[k, "error"], out.loc[k]
    for k in (1, 3, 4):
        assert not out.loc[k, "predicted"] and "blank" in out.loc[k, "error"], out.loc[k]


# ------------------------------------------------------------------ 3. a full disk
def test_predict_on_a_full_disk_leaves_no_cut_file_under_the_output_name(
    tmp_path, text_bundle, capsys
):
    manifest = _text_manifest(tmp_path / "m.csv", 600)
    result = tmp_path / "p.csv"
    result.write_bytes(b"old predictions\n")
    with _disk_full_above(16_000):
        code = main(["predict", str(text_bundle), "--manifest", str(manifest), "-o",
                     str(result), "--no-progress"])  # fmt: skip
    assert code == 2
    assert result.read_bytes() == b"old predictions\n"  # never a cut file that looks whole
    partial = tmp_path / "p.csv.partial"  # the rows so far, named so no reader mistakes them
    assert partial.exists() and 0 < partial.stat().st_size <= 16_000
    _one_line_error(capsys.readouterr().err, str(partial))


def test_timeline_on_a_full_disk_keeps_the_old_outputs_whole(tmp_path, speech_bundle, capsys):
    recording = tmp_path / "rec.wav"
    quiet = np.zeros(16_000, np.float32)
    sf.write(recording, np.concatenate([toy_clip("angry", 1.0), quiet, toy_clip("sad", 1.0)]),
             16_000)  # fmt: skip
    out = tmp_path / "tl"
    argv = ["timeline", str(speech_bundle), str(recording), "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    names = ("segments.csv", "summary.json", "timeline.png")
    before = {name: (out / name).read_bytes() for name in names}
    assert len(before["timeline.png"]) > 8_000
    capsys.readouterr()
    with _disk_full_above(8_000):
        assert main(argv) == 2
    assert {name: (out / name).read_bytes() for name in names} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    _one_line_error(capsys.readouterr().err, "timeline.png")


TRAIN_FLAGS = ["--speech", "toy-speech", "--text", "toy-text", "--recipe", "paper", "--epochs",
               "3", "--hidden", "8", "--batch-size", "8", "--no-progress"]  # fmt: skip


def test_train_on_a_full_disk_is_one_line_and_keeps_the_old_bundle(tmp_path, capsys):
    from test_bundle import LABELS
    from test_pipeline import tone_table

    split = write_table(tone_table(tmp_path, (6, 2, 3)), tmp_path / "split.parquet", LABELS)
    out = tmp_path / "bundle"
    argv = ["train", str(split), "--store", str(tmp_path / "st"), "-o", str(out), *TRAIN_FLAGS]
    assert main(argv) == 0  # fills the store: the second run only writes the bundle
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    with _disk_full_above(2_000):
        assert main(argv) == 2
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    _one_line_error(capsys.readouterr().err, str(out))


# ------------------------------------------------------------------ 4. format by extension
def test_the_output_format_follows_its_extension(tmp_path, text_bundle, capsys):
    manifest = _text_manifest(tmp_path / "m.csv", 5)
    frames = {}
    for suffix in (".csv", ".tsv", ".parquet"):
        result = tmp_path / f"p{suffix}"
        assert main(["predict", str(text_bundle), "--manifest", str(manifest), "-o",
                     str(result), "--no-progress"]) == 0  # fmt: skip
        if suffix == ".parquet":
            frames[suffix] = pd.read_parquet(result).astype(str)
        else:
            sep = "\t" if suffix == ".tsv" else ","
            frames[suffix] = pd.read_csv(result, sep=sep, dtype=str, keep_default_na=False)
    assert list(frames[".tsv"].columns) == list(frames[".csv"].columns)
    assert frames[".tsv"].shape == frames[".csv"].shape == (5, len(frames[".csv"].columns))
    assert frames[".parquet"]["predicted"].tolist() == frames[".csv"]["predicted"].tolist()
    capsys.readouterr()
    refused = tmp_path / "p.txt"
    assert main(["predict", str(text_bundle), "--manifest", str(manifest), "-o",
                 str(refused)]) == 2  # fmt: skip
    _one_line_error(capsys.readouterr().err, ".tsv", ".parquet")
    assert not refused.exists()
    manifest = _text_manifest(tmp_path / "corpus.csv", 6, labels=True)
    assert main(["prepare", str(manifest), "-o", str(tmp_path / "t.tsv"), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, ".parquet", ".csv")
    assert not (tmp_path / "t.tsv").exists()


# ------------------------------------------------------------------ 5. blank text
def test_blank_text_is_called_blank_in_the_cli_and_the_service(text_bundle, both_app, capsys):
    from fastapi.testclient import TestClient

    for blank in ("   ", ""):
        assert main(["predict", str(text_bundle), "--text", blank]) == 2
        _one_line_error(capsys.readouterr().err, "blank")
    app, _ = both_app
    clip = ("a.wav", wav_bytes(toy_clip("sad")), "audio/wav")
    with TestClient(app) as client:
        for blank in ("   ", ""):
            said = client.post("/predict", files={"audio": clip}, data={"text": blank})
            assert said.status_code == 422 and "blank" in said.json()["detail"], said.text
        batch = client.post("/predict/batch", files=[("audio", clip)], data={"texts": ["  "]})
        assert batch.status_code == 200 and "blank" in batch.json()[0]["detail"], batch.text


# ------------------------------------------------------------------ 6. headers too large
def _status_of(port: int, head: bytes, pieces: int) -> int | None:
    """Send ``head`` in ``pieces`` writes; the status line's code, None if none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        step = -(-len(head) // pieces)
        with contextlib.suppress(OSError):  # the server may answer and close mid-send
            for start in range(0, len(head), step):
                sock.sendall(head[start : start + step])
                if pieces > 1:
                    time.sleep(0.005)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
    first = answer.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else None


@contextlib.contextmanager
def _logging_kept():
    """uvicorn applies the service's log config (emofuse's loggers stop propagating):
    put every logger back as it was, so later tests still see their log records."""
    import logging

    names = ["", "emofuse", "uvicorn", "uvicorn.access", "uvicorn.error"]
    loggers = [logging.getLogger(name) for name in names]
    kept = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for lg, (handlers, level, propagate, disabled) in zip(loggers, kept, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


def test_headers_over_the_limit_get_431_in_one_write_or_in_pieces():
    with _logging_kept():
        _headers_over_the_limit_get_431()


def _headers_over_the_limit_get_431() -> None:
    import uvicorn

    from emofuse.serve.server import ServerSettings, uvicorn_config

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServerSettings(port=port, max_header_bytes=2048, log_level="error")
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

        def head(size: int) -> bytes:
            return (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * size}\r\n"
                    "Connection: close\r\n\r\n").encode()  # fmt: skip

        assert _status_of(port, head(100), 1) == 200
        assert _status_of(port, head(1500), 8) == 200  # under the limit, in pieces
        assert _status_of(port, head(6000), 1) == 431
        assert _status_of(port, head(6000), 30) == 431
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ------------------------------------------------------------------ 7. no server path
def test_no_answer_shows_a_server_path(both_app, monkeypatch):
    from fastapi.testclient import TestClient

    app, bundle = both_app
    folder = Path(bundle.path)
    secrets = {str(folder), str(folder.resolve()), str(folder.parent)}
    clip = ("talk.wav", wav_bytes(np.tile(toy_clip("sad", 1.0), 3)), "audio/wav")
    with TestClient(app) as client:
        said = client.post("/timeline", files={"audio": clip})  # a text model, no words
        assert said.status_code == 422, said.text
        assert "talk.wav" in said.json()["detail"]
        assert not any(s in said.text for s in secrets), said.text

        def broken(*args, **kwargs):
            raise ValueError(f"{folder / 'encoders' / 'text' / 'state'}: cannot be read")

        monkeypatch.setattr(bundle, "predict", broken)
        said = client.post("/predict", files={"audio": clip}, data={"text": TEXTS[0]})
        assert said.status_code == 422, said.text
        assert not any(s in said.text for s in secrets), said.text


# ------------------------------------------------------------------ 8. an upload with no name
@pytest.mark.parametrize("route", ["/predict", "/predict/batch", "/timeline"])
def test_an_audio_part_with_an_empty_file_name_says_so(both_app, route):
    from fastapi.testclient import TestClient

    app, _ = both_app
    data = {"text": TEXTS[0]} if route == "/predict" else {}
    with TestClient(app) as client:
        for content, said in ((wav_bytes(toy_clip("sad")), "file name"), (b"", "empty")):
            answer = client.post(route, files=[("audio", ("", content, "audio/wav"))], data=data)
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"]
            assert said in detail and "UploadFile" not in detail, detail


# ------------------------------------------------------------------ 9. two runs, one store
def test_a_second_extract_on_one_encoder_folder_stops_at_once(tmp_path, monkeypatch, capsys):
    import support.toy_encoders as toy_encoders
    from support.toy_encoders import encoded_items, make_corpus

    corpus = write_table(make_corpus(tmp_path / "corpus", n=12), tmp_path / "corpus.csv")
    store = tmp_path / "st"
    argv = ["extract", str(corpus), "--speech", "toy-stats", "--store", str(store),
            "--no-progress", "--batch-size", "1"]  # fmt: skip
    first_log = tmp_path / "first.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOY_")}
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]),
               EMOFUSE_PLUGINS="support.toy_encoders", TOY_SLEEP_S="2",
               TOY_ENCODE_LOG=str(first_log))  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "emofuse", *argv], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not encoded_items(first_log):  # the first run is filling the folder
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run did not start encoding"
            time.sleep(0.05)
        second_log = tmp_path / "second.log"
        monkeypatch.setenv("TOY_ENCODE_LOG", str(second_log))
        assert toy_encoders.ToyStats  # registered in this process too
        capsys.readouterr()
        started = time.monotonic()
        assert main(argv) == 2
        assert time.monotonic() - started < 10
        _one_line_error(capsys.readouterr().err, f"pid {first.pid}")
        assert encoded_items(second_log) == 0  # said at once, before any work
    finally:
        first.kill()
        first.wait(timeout=10)
    # The first run is gone (killed): its lock is stale, and the next run goes on.
    assert main(argv) == 0
    assert encoded_items(second_log) > 0
    assert not list(store.rglob("run.lock"))


# ------------------------------------------------------------------ 10. rows dropped
def test_prepare_says_how_many_rows_it_dropped_and_why(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,text,label\na,하나,happy\na,둘,sad\nb,셋,happy\nb,넷,sad\nc,다섯,sad\n",
        encoding="utf-8",
    )
    problems = tmp_path / "p.tsv"
    out = tmp_path / "t.parquet"
    assert main(["prepare", str(manifest), "-o", str(out), "--problems", str(problems),
                 "--quiet"]) == 0  # fmt: skip
    said = capsys.readouterr().out.splitlines()
    assert any("2 rows dropped (duplicate-id 2)" in line and str(problems) in line
               for line in said), said  # fmt: skip
    assert len(pd.read_parquet(out)) == 3
    report = pd.read_csv(problems, sep="\t")  # the problems report follows its extension too
    assert report["reason"].str.startswith("duplicate-id").sum() == 2


# ------------------------------------------------------------------ review round: locks
def test_a_lock_left_by_this_pid_or_half_written_is_taken_over(tmp_path):
    """After a crash in a container the next run often has the same pid (1), and a run
    that died while writing its lock leaves an empty file: neither blocks the store."""
    import json
    import os
    import socket
    import time

    from emofuse.features.lock import UNREADABLE_LOCK_S, run_lock

    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.write_text("")  # half-written, long ago
    old = time.time() - UNREADABLE_LOCK_S - 5
    os.utime(lock, (old, old))
    with run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_parquet_output_whose_first_chunk_all_failed_keeps_later_numbers(tmp_path):
    """A first chunk of failed rows (blank probabilities) must not fix the Parquet schema
    to text or null: later chunks keep their numbers, blanks are nulls."""
    import pandas as pd

    from emofuse.outputs import TableWriter

    path = tmp_path / "out.parquet"
    with TableWriter(path, "parquet", numeric=["p_a", "speaker_clips"]) as writer:
        writer.write(pd.DataFrame({"audio": ["x"], "p_a": [""], "speaker_clips": [None],
                                   "agree": pd.array([None], dtype="boolean"),
                                   "error": ["bad"]}))  # fmt: skip
        writer.write(pd.DataFrame({"audio": ["y"], "p_a": [0.25], "speaker_clips": [3],
                                   "agree": pd.array([True], dtype="boolean"),
                                   "error": [""]}))  # fmt: skip
    table = pd.read_parquet(path)
    assert table["p_a"].dtype == "float64" and table["p_a"].isna().tolist() == [True, False]
    assert table["speaker_clips"].tolist()[1] == 3.0
    assert table["agree"].tolist()[1] is True or table["agree"].tolist()[1] == True  # noqa: E712
