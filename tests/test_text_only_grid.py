"""A grid over text encoders on a text-only corpus (no audio column), offline: the two
Kiwi encoders and a tiny local Hugging Face text model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.tiny_models import make_tiny_text_model
from test_text_only import text_manifest

from emofuse.experiments.config import grid_config_from_dict, load_grid_config, with_corpus
from emofuse.experiments.runner import run_grid

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_example_config_is_a_text_only_grid():
    config = load_grid_config(CONFIGS / "kote_text.toml", check_corpus=False)
    assert config.grid.modalities == ("text",) and config.encoders.speech == ()
    assert config.encoders.text[0] == "kiwi-tfidf" and "kiwi-sparse" in config.encoders.text
    assert with_corpus(config, "kote.parquet").corpus.source.endswith("kote.parquet")


@pytest.mark.slow
def test_a_grid_compares_text_encoders_on_a_text_only_manifest(tmp_path):
    manifest = text_manifest(tmp_path / "texts.csv", per_label=20)
    electra = make_tiny_text_model(tmp_path / "electra", kind="electra")
    specs = ["kiwi-sparse?C=1", "kiwi-tfidf?dim=16", str(electra)]
    config = grid_config_from_dict(
        {
            "name": "text-only",
            "corpus": {"source": str(manifest)},
            "split": {"strategies": ["stratified", "speaker"], "val_size": 0.2},
            "encoders": {"speech": [], "text": specs},
            "grid": {"modalities": ["text"], "per_label": [6, "all"], "orders": ["shortest"]},
            "train": {"epochs": 30, "hidden": 16, "lr": 0.01, "batch_size": 8},
            "output": {"dir": str(tmp_path / "out")},
        }
    )
    run = run_grid(config, progress=False)
    assert run.failed == []
    results = run.results
    assert len(results) == 2 * 3 * 2  # strategies x encoders x sizes
    assert set(results["modality"]) == {"text"}
    assert results["uar"].between(0, 1).all()
    # The labels decide the sentence, so the sparse model learns them on the full set.
    best = results[(results["text_encoder"] == specs[0]) & (results["per_label"] == "all")]
    assert (best["uar"] > 0.6).all(), best[["split_strategy", "uar"]]


def test_a_label_learning_text_encoder_sees_only_its_cells_sample(tmp_path):
    """kiwi-sparse learns from labels: a cell at per_label=3 must fit it on its own 3 rows
    per label, not on the split's whole train part (which would inflate learning
    curves); kiwi-tfidf learns from unlabelled text and is fitted once per split."""
    manifest = text_manifest(tmp_path / "texts.csv", per_label=12)
    config = grid_config_from_dict(
        {
            "name": "label-fit",
            "corpus": {"source": str(manifest)},
            "split": {"strategies": ["stratified"], "val_size": 0.2},
            "encoders": {"speech": [], "text": ["kiwi-sparse?C=1&folds=0", "kiwi-tfidf?dim=4"]},
            "grid": {"modalities": ["text"], "per_label": [3, "all"], "orders": ["random"]},
            "train": {"epochs": 2, "hidden": 4, "batch_size": 8},
            "output": {"dir": str(tmp_path / "out")},
        }
    )
    run = run_grid(config, progress=False)
    assert run.failed == []
    fitted: dict[str, list[int]] = {}
    for record in (tmp_path / "out" / "features" / "text" / "fits").glob("*.json"):
        info = json.loads(record.read_text())
        fitted.setdefault(info["spec"].split("?")[0], []).append(info["n_texts"])
    n_train = max(fitted["kiwi-tfidf"])
    assert fitted["kiwi-tfidf"] == [n_train]  # once, on the whole train part
    assert sorted(fitted["kiwi-sparse"]) == [3 * 3, n_train]  # 3 labels x 3 rows, then all
