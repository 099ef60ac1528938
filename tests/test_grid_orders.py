"""Grids with orders `diverse` (k-center over each cell's own vectors: speech, or text for
text-only cells) and `speaker-balanced`: run end to end into results, tables and plots,
read only train rows to choose, and refuse a corpus or encoder they cannot use with one
line naming the order. Toy encoders keep it fast."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-chars
from test_experiment_runner import LABELS, make_toy_corpus

from emofuse.corpus.table import read_table, write_table
from emofuse.encoders.registry import build_encoder
from emofuse.experiments.config import (
    ORDERS,
    GridConfigError,
    GridRunError,
    grid_config_from_dict,
)
from emofuse.experiments.plan import plan_cells
from emofuse.experiments.plots import _draw, curve_points
from emofuse.experiments.runner import run_grid
from emofuse.experiments.samples import sample_cell_rows
from emofuse.experiments.split_views import make_splits
from emofuse.experiments.tables import ORDER_NAMES
from emofuse.experiments.vectors import CachedVectors, fill_order_vectors
from emofuse.features import FeatureStore, extract_features
from emofuse.sampling import ORDERS as SAMPLING_ORDERS
from emofuse.sampling import sample_per_label

NEW_ORDERS = ["diverse", "speaker-balanced"]


def grid(corpus: Path, out: Path, **overrides) -> object:
    raw = {
        "name": "orders",
        "corpus": {"source": str(corpus)},
        "split": {"strategies": ["speaker"], "val_size": 0.2, "test_size": 0.25},
        "encoders": {"speech": ["toy-stats"], "text": ["toy-chars"]},
        "grid": {
            "modalities": ["speech", "text", "both"],
            "per_label": [2, "all"],
            "orders": NEW_ORDERS,
            "seeds": [0],
        },
        "train": {"epochs": 3, "hidden": 16},
        "output": {"dir": str(out)},
    }
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    return grid_config_from_dict(raw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_toy_corpus(tmp_path_factory.mktemp("toy-corpus"))


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "out"
    return run_grid(grid(corpus, out), progress=False), out


# ---------------------------------------------------------------------- config, ids


def test_grid_orders_are_the_sampling_orders_and_all_have_display_names():
    assert ORDERS == SAMPLING_ORDERS
    assert set(ORDER_NAMES) == set(SAMPLING_ORDERS)
    with pytest.raises(GridConfigError, match="grid.orders.*'bogus'.*speaker-balanced"):
        grid_config_from_dict({"grid": {"orders": ["diverse", "bogus"]}})


def test_the_cell_id_follows_the_order(corpus, tmp_path):
    config = grid(corpus, tmp_path / "out", grid={"orders": ["random", *NEW_ORDERS]})
    cells = plan_cells(config, {"speaker": [""]})
    ids = {}
    for cell in cells:
        key = dataclasses.replace(cell, order="")
        ids.setdefault(key, set()).add(cell.cell_id(config))
    assert all(len(by_order) == 3 for by_order in ids.values())


# ----------------------------------------------------------------------- end to end


def test_a_grid_of_the_new_orders_runs_into_results_tables_and_plots(finished):
    run, out = finished
    assert run.failed == [] and run.ran == run.cells == 1 * 3 * 2 * 2
    assert set(run.results["order"]) == set(NEW_ORDERS)
    two = run.results[run.results["per_label"] == "2"]
    assert (two["n_train"] == 2 * len(LABELS)).all()
    for name in ("table3", "table4", "table6", "summary"):
        text = (out / "tables" / f"{name}.md").read_text()
        assert ORDER_NAMES["diverse"] in text or "diverse (k-center)" in text, name
        assert "Speaker-balanced" in text or "speaker-balanced" in text, name
    assert (out / "plots" / "curves-speaker.png").stat().st_size > 0

    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    _draw(ax, curve_points(run.results, "uar", n_classes=len(LABELS)), "speaker", "uar")
    labels = ax.get_legend_handles_labels()[1]
    plt.close(figure)
    assert any(label.endswith("diverse (k-center)") for label in labels)
    assert any(label.endswith("speaker-balanced") for label in labels)


def _train_ids(out: Path, results: pd.DataFrame, modality: str, order: str) -> list[str]:
    row = results[
        (results["modality"] == modality)
        & (results["order"] == order)
        & (results["per_label"] == "2")
    ].iloc[0]
    return (out / row["train_ids_file"]).read_text().split()


def _train_table(corpus: Path, out: Path) -> pd.DataFrame:
    table, _ = read_table(corpus)
    split = pd.read_csv(out / "splits" / "speaker.csv")
    train_ids = split.loc[split["part"] == "train", "id"]
    return table.set_index("id").loc[train_ids].reset_index()


def test_diverse_cells_spread_over_their_own_vectors(corpus, finished):
    """Speech and both cells pick by the cell's speech vectors, text cells by its text
    vectors (fitted on the split's train part): the picks are k-center greedy over
    exactly those, aligned row by row."""
    run, out = finished
    train = _train_table(corpus, out)
    store = FeatureStore(out / "features")
    speech = store.get(train, build_encoder("toy-stats", "speech"))
    text_encoder = extract_features(
        train, store=store, text="toy-chars", fit_table=train, progress=False
    )["text"]
    text = store.get(train, text_encoder)
    for modality, vectors in (("speech", speech), ("both", speech), ("text", text)):
        expected = sample_per_label(train, 2, order="diverse", seed=0, vectors=vectors)
        picked = _train_ids(out, run.results, modality, "diverse")
        assert sorted(picked) == sorted(expected["id"]), modality
    # the speech picks are not those the text vectors would give, nor the first rows
    by_text = sample_per_label(train, 2, order="diverse", seed=0, vectors=text)
    by_random = sample_per_label(train, 2, order="random", seed=0)
    speech_picks = set(_train_ids(out, run.results, "speech", "diverse"))
    assert speech_picks != set(by_text["id"]) or speech_picks != set(by_random["id"])


def test_speaker_balanced_cells_take_turns_over_the_train_speakers(corpus, finished):
    run, out = finished
    train = _train_table(corpus, out).set_index("id")
    for modality in ("speech", "text", "both"):
        picked = train.loc[_train_ids(out, run.results, modality, "speaker-balanced")]
        for label in LABELS:
            speakers = picked.loc[picked["label"] == label, "speaker"]
            available = train.loc[train["label"] == label, "speaker"].nunique()
            assert speakers.nunique() == min(2, available), (modality, label)


# ------------------------------------------------------------------------- leakage


def test_diverse_reads_only_train_rows(corpus, tmp_path):
    """Vectors of val and test rows (here wild outliers) never change a cell's picks:
    the cached vectors may hold them or not."""
    config = grid(corpus, tmp_path / "out", grid={"orders": ["diverse"], "modalities": ["speech"]})
    table, _ = read_table(corpus)
    view = make_splits(table, config)[0]
    cell = next(c for c in plan_cells(config, {"speaker": [""]}) if c.per_label == 2)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(table), 4))
    held_out = view.part != "train"
    vectors[held_out] = 1e6 * rng.standard_normal((int(held_out.sum()), 4))
    everything = CachedVectors(np.arange(len(table)), vectors)
    train = view.rows("train")
    train_only = CachedVectors(train, vectors[train])
    picked, _ = sample_cell_rows(table, view, cell, config, everything)
    assert set(picked) <= set(train) and len(picked) == 2 * len(LABELS)
    assert list(picked) == list(sample_cell_rows(table, view, cell, config, train_only)[0])
    # and a train row without a vector is never picked
    missing = CachedVectors(train[1:], vectors[train[1:]])
    assert train[0] not in set(sample_cell_rows(table, view, cell, config, missing)[0])


def test_order_vectors_are_extracted_for_train_rows_only(corpus, tmp_path, monkeypatch):
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    config = grid(corpus, tmp_path / "out", grid={"orders": ["diverse"]})
    table, _ = read_table(corpus)
    views = {view.key: view for view in make_splits(table, config)}
    cells = plan_cells(config, {"speaker": [""]})
    cache, notes = fill_order_vectors(
        config, table, views, cells, store_dir=tmp_path / "store", progress=False
    )
    train = views["speaker"].rows("train")
    assert notes == [] and len(cache) == 2  # toy-stats (speech, both) and toy-chars (text)
    for vectors in cache.values():
        assert list(vectors.rows) == list(train)
    kinds = [line.split()[0] for line in log.read_text().splitlines()]
    assert kinds.count("speech") == len(train)
    assert kinds.count("text") <= len(train)


# -------------------------------------------------------------------- refusals


def test_speaker_balanced_on_a_corpus_without_speakers_stops_before_any_work(
    corpus, tmp_path, monkeypatch
):
    table, labels = read_table(corpus)
    nameless = write_table(table.assign(speaker=""), tmp_path / "nameless.parquet", labels)
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    config = grid(nameless, tmp_path / "out", split={"strategies": ["stratified"]})
    with pytest.raises(GridRunError, match="grid.orders: 'speaker-balanced'.*nameless") as err:
        run_grid(config, progress=False)
    assert "\n" not in str(err.value)
    assert not log.exists()


def test_diverse_text_cells_refuse_a_label_learning_text_encoder(corpus, tmp_path, monkeypatch):
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    config = grid(
        corpus,
        tmp_path / "out",
        encoders={"text": ["kiwi-sparse"]},
        grid={"orders": ["diverse"], "modalities": ["text"]},
    )
    with pytest.raises(GridRunError, match="'diverse'.*'kiwi-sparse'.*learns"):
        run_grid(config, progress=False)
    assert not log.exists()


def test_cell_ids_hash_the_resolved_training_settings():
    from emofuse.experiments.config import grid_config_from_dict
    from emofuse.experiments.plan import resolved_train_settings

    left = grid_config_from_dict({})
    written = grid_config_from_dict(
        {"train": {"class_weighting": True, "logistic_blend": 0.5, "head": "mlp+linear"}}
    )
    other = grid_config_from_dict({"train": {"class_weighting": False}})
    assert resolved_train_settings(left) == resolved_train_settings(written)
    assert resolved_train_settings(left) != resolved_train_settings(other)
    assert "seed" not in resolved_train_settings(left)
