"""Shared test set-up: no network for Hugging Face, a headless matplotlib, and the
real data in ../shared/data (skipped with a clear message where it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from support.requirements import need_shared

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared(name: str) -> Path:
    return need_shared(name)


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """EmoDB (German emotional speech): wav/ and manifest.csv."""
    return _shared("emodb")


@pytest.fixture(scope="session")
def kote_dir() -> Path:
    """KOTE (Korean emotion-labelled comments): test.tsv, val.tsv, labels.txt."""
    return _shared("kote")


@pytest.fixture(scope="module")  # each test module gets its own copy
def emodb_table(emodb_dir: Path) -> pd.DataFrame:
    """EmoDB as an utterance table: script = the sentence code in the file name
    (``03a01Fa`` -> ``a01``), durations from the WAV headers."""
    import soundfile as sf

    from emofuse.corpus.table import validate_table

    manifest = pd.read_csv(emodb_dir / "manifest.csv")
    paths = [emodb_dir / a for a in manifest["audio"]]
    stems = [p.stem for p in paths]
    return validate_table(
        pd.DataFrame(
            {
                "id": stems,
                "audio": [str(p) for p in paths],
                "text": manifest["text"],
                "label": manifest["label"],
                "speaker": manifest["speaker"],
                "script": [s[2:5] for s in stems],
                "duration_s": [sf.info(str(p)).duration for p in paths],
                "source_split": "",
            }
        )
    )
