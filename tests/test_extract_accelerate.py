"""`emofuse extract` under `accelerate launch` with 2 CPU processes.

On a machine without CUDA the working invocation is ``accelerate launch --multi_gpu
--num_processes 2 ...``: ``--cpu`` alone starts a single process. The ranks then join a
gloo process group (features.current_ranks passes ``cpu=True``). On a GPU machine the
test hides CUDA (``CUDA_VISIBLE_DEVICES=""``), so that it means the same everywhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.requirements import need_accelerate
from support.toy_encoders import make_corpus
from test_extract_resume import extract_argv

from emofuse.corpus.table import write_table
from emofuse.encoders import build_encoder
from emofuse.features import FeatureStore, extract_features

TESTS = Path(__file__).resolve().parent


def _accelerate() -> str:
    return need_accelerate()


def _free_port() -> int:
    # Other test runs on this machine may hold torch's default port 29500.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_share_the_work_and_match_a_single_process_run(tmp_path: Path):
    table = make_corpus(tmp_path / "corpus", n=14)
    Path(table.loc[5, "audio"]).write_bytes(b"not audio")
    corpus = write_table(table, tmp_path / "corpus.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOY_", "ACCELERATE_"))}
    env["PYTHONPATH"] = str(TESTS)
    env["HF_HOME"] = str(tmp_path / "hf")  # no user accelerate config can change the launch
    env["CUDA_VISIBLE_DEVICES"] = ""  # two CPU ranks, also where a GPU is
    command = [
        _accelerate(),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "emofuse",
        *extract_argv(
            corpus,
            tmp_path / "store",
            *("--text", "toy-chars", "--plugin", "support.toy_encoders"),
            *("--batch-size", "2", "--shard-size", "3"),
        ),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("utterances from") == 1  # only rank 0 reports
    assert "on 2 processes" in done.stdout
    # The report counts both ranks' work (it is read back from the store).
    assert "toy-stats: 13 computed, 0 cached, 1 failed" in done.stdout
    assert "u005.wav" in done.stdout

    store = FeatureStore(tmp_path / "store")
    speech = build_encoder("toy-stats", "speech")
    shard_names = [p.name for p in store.part_dir(speech).shards_dir.glob("*.npz")]
    assert any(n.startswith("shard-r0-") for n in shard_names)
    assert any(n.startswith("shard-r1-") for n in shard_names)

    single = FeatureStore(tmp_path / "single")
    single.ensure(table, speech, progress=False)
    mask = store.available(table, speech)
    assert mask.sum() == 13 and not mask[5]
    np.testing.assert_array_equal(store.get(table[mask], speech), single.get(table[mask], speech))

    # The fitted text encoder is reloaded from the store and every text vector is there.
    fit_table = table[table["part"] == "train"]
    again = extract_features(
        table, store=store, text="toy-chars", fit_table=fit_table, progress=False
    )
    text = again["text"]
    assert text.fit_calls == 0 and store.get(table, text).shape == (14, text.dim)
