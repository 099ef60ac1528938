"""`emofuse extract`: killed with SIGKILL mid-run, then resumed; and its command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.toy_encoders import encoded_items, make_corpus

from emofuse.cli import main
from emofuse.corpus.table import write_table
from emofuse.encoders import build_encoder
from emofuse.features import FeatureStore

TESTS = Path(__file__).resolve().parent
N_CLIPS = 24


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def extract_argv(corpus: Path, store: Path, *extra: str, speech: str = "toy-stats") -> list[str]:
    """`emofuse extract` arguments (after the program name), quiet, with a speech encoder
    unless ``speech`` is empty."""
    encoders = ["--speech", speech] if speech else []
    return ["extract", str(corpus), *encoders, "--store", str(store), "--no-progress", *extra]


def _command(corpus: Path, store: Path, *extra: str) -> list[str]:
    plugin = ("--plugin", "support.toy_encoders")
    return [sys.executable, "-m", "emofuse", *extract_argv(corpus, store, *plugin, *extra)]


def _shard_stats(shards: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards.glob("shard-*.npz")}


def _keys_in(shards: Path) -> set[str]:
    keys: set[str] = set()
    for path in shards.glob("shard-*.npz"):
        with np.load(path) as npz:
            keys.update(npz["keys"].tolist())
    return keys


def test_killed_extraction_resumes_without_recomputing(tmp_path: Path):
    table = make_corpus(tmp_path / "corpus", n=N_CLIPS)
    corpus = write_table(table, tmp_path / "corpus.csv")
    encoder = build_encoder("toy-stats", "speech")

    reference = subprocess.run(
        _command(corpus, tmp_path / "reference"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reference.returncode == 0, reference.stderr

    store = tmp_path / "store"
    shards = FeatureStore(store).part_dir(encoder).shards_dir
    slow = subprocess.Popen(
        _command(corpus, store, "--batch-size", "2", "--shard-size", "4"),
        env=_env(TOY_SLEEP_S="0.15"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list(shards.glob("shard-*.npz"))) < 2:
        assert slow.poll() is None, "the extraction ended before it could be killed"
        assert time.monotonic() < deadline, "no shards appeared within 60 s"
        time.sleep(0.02)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=10)
    assert slow.returncode == -signal.SIGKILL

    before = _shard_stats(shards)
    done_before = _keys_in(shards)
    assert 0 < len(done_before) < N_CLIPS  # the kill landed mid-run

    log = tmp_path / "resume.log"
    resumed = subprocess.run(
        _command(corpus, store, "--batch-size", "2", "--shard-size", "4"),
        env=_env(TOY_ENCODE_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    missing = N_CLIPS - len(done_before)
    assert f"toy-stats: {missing} computed, {len(done_before)} cached, 0 failed" in resumed.stdout
    assert encoded_items(log) == missing  # only the missing clips were encoded
    after = _shard_stats(shards)
    assert {name: after[name] for name in before} == before  # old shards untouched
    assert _keys_in(shards) == set(table["id"])

    np.testing.assert_array_equal(
        FeatureStore(store).get(table, encoder),
        FeatureStore(tmp_path / "reference").get(table, encoder),
    )


def test_second_run_computes_nothing_and_prints_the_report(tmp_path, capsys):
    table = make_corpus(tmp_path / "corpus", n=6)
    corpus = write_table(table, tmp_path / "corpus.csv")
    argv = extract_argv(corpus, tmp_path / "store", "--text", "toy-len")
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "speech toy-stats: 6 computed, 0 cached, 0 failed" in first
    assert "text toy-len: 4 computed" in first  # 4 distinct scripts among 6 clips
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "speech toy-stats: 0 computed, 6 cached" in second
    assert "text toy-len: 0 computed, 4 cached" in second


def test_fit_part_from_a_split_file_fits_on_training_rows_only(tmp_path, capsys):
    table = make_corpus(tmp_path / "corpus", n=9)
    table.loc[table["part"] == "test", "text"] = "시험 전용 문장"
    corpus = write_table(table.drop(columns=["part"]), tmp_path / "corpus.csv")
    split = tmp_path / "split.csv"
    table[["id", "part"]].to_csv(split, index=False)
    store = tmp_path / "store"
    argv = extract_argv(corpus, store, "--text", "toy-chars", "--split", str(split), speech="")
    assert main(argv) == 0
    out = capsys.readouterr().out
    state = next((store / "text").glob("toy-chars-*/state/vocab.json"))
    vocab = set(json.loads(state.read_text()))
    train_chars = {
        c for t in table.loc[table["part"] == "train", "text"] for c in t if not c.isspace()
    }
    assert vocab == train_chars and "험" not in vocab
    assert "text toy-chars:" in out and "fingerprint=" in out


def test_command_line_errors_are_one_line(tmp_path, capsys):
    table = make_corpus(tmp_path / "corpus", n=3)
    corpus = write_table(table.drop(columns=["part"]), tmp_path / "corpus.csv")
    store = str(tmp_path / "store")
    assert main(["extract", str(corpus), "--store", store]) == 2
    assert "give --speech SPEC, --text SPEC or both" in capsys.readouterr().err
    assert main(["extract", str(corpus), "--text", "toy-chars", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "must be fitted" in err and "--split" in err and len(err.strip().splitlines()) == 1
    assert (
        main(["extract", str(tmp_path / "none.csv"), "--speech", "toy-stats", "--store", store])
        == 2
    )
    assert "none.csv" in capsys.readouterr().err
    bad_split = tmp_path / "split.csv"
    pd.DataFrame({"id": ["u000"]}).to_csv(bad_split, index=False)
    assert (
        main(
            [
                "extract",
                str(corpus),
                "--text",
                "toy-len",
                "--store",
                store,
                "--split",
                str(bad_split),
            ]
        )
        == 2
    )
    assert "part" in capsys.readouterr().err
    assert (
        main(
            [
                "extract",
                str(corpus),
                "--speech",
                "toy-stats",
                "--store",
                store,
                "--plugin",
                "no_such_plugin_module",
            ]
        )
        == 2
    )
    assert "no_such_plugin_module" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--float16", "--retry-failed"])
def test_flags_reach_the_store(tmp_path, capsys, flag):
    table = make_corpus(tmp_path / "corpus", n=3)
    Path(table.loc[1, "audio"]).write_bytes(b"broken")
    corpus = write_table(table, tmp_path / "corpus.csv")
    argv = extract_argv(corpus, tmp_path / "s", flag)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 computed, 0 cached, 1 failed" in out and "u001.wav" in out
    if flag == "--float16":
        assert list((tmp_path / "s" / "speech").glob("toy-stats-*-f16"))
    else:
        assert main(argv) == 0  # retried, fails again, recorded again
        assert "1 failed" in capsys.readouterr().out
