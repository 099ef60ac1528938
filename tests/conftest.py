"""Shared test set-up: no network for Hugging Face, a headless matplotlib, and the
real data in ../shared/data (skipped with a clear message where it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(
            f"{path} is absent: these tests read real data from ../shared/data beside the "
            "project root (present in the team's checkouts and CI, not in a user's clone)"
        )
    return path


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """EmoDB (German emotional speech): wav/ and manifest.csv."""
    return _shared("emodb")


@pytest.fixture(scope="session")
def kote_dir() -> Path:
    """KOTE (Korean emotion-labelled comments): test.tsv, val.tsv, labels.txt."""
    return _shared("kote")
