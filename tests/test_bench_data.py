"""Benchmarks take their corpus as an argument (the team's ../shared folder is not in a
user's clone) and stop with a message that says what to pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    "script, says",
    [
        ("grid_table6.py", ["pass --emodb DIR", "manifest.csv", "or use --corpus demo"]),
        ("offline_encoders.py", ["pass --emodb DIR"]),
        ("kote_text.py", ["pass --kote DIR", "labels.txt, val.tsv, test.tsv"]),
        ("serve_load.py", ["pass --emodb DIR", "or pass --bundle BUNDLE --clip CLIP"]),
    ],
)
def test_a_benchmark_without_its_corpus_says_what_to_pass(script, says, tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / script)], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    for words in says:
        assert words in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr


def test_a_folder_without_the_corpus_files_is_named(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "offline_encoders.py"), "--emodb", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert f"{tmp_path / 'manifest.csv'}: missing; pass --emodb DIR" in done.stderr
