"""Training-side integration of model selection and speaker normalisation (issue 21):
the recipe's phases, what the bundle records and loads, evaluation adapting test rows
like predict, the grid's new axis keeping earlier cell ids."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_bundle import LABELS
from test_pipeline import tone_table

from emofuse.bundle import Bundle
from emofuse.experiments.config import GridConfigError, grid_config_from_dict
from emofuse.experiments.plan import Cell, plan_cells
from emofuse.features import FeatureStore
from emofuse.finetune.config import FinetuneConfig
from emofuse.head.config import TrainConfig
from emofuse.pipeline import evaluate_bundle, train_and_evaluate

SMALL = dict(epochs=2, hidden=8, min_steps=20, batch_size=16)


def with_speakers(table, n=4):
    table = table.copy()
    table["speaker"] = [f"s{i % n}" for i in range(len(table))]
    table.loc[table.index[-1], "speaker"] = ""  # a blank: scored unadapted
    return table


def test_recipe_settings_resolve_and_paper_refuses_adaptation():
    small, paper = TrainConfig().resolved(), TrainConfig(recipe="paper").resolved()
    assert (small.select, small.speaker_norm) == (True, "auto")
    assert (paper.select, paper.speaker_norm) == (False, "off")
    assert TrainConfig(head="mlp").resolved().select is False  # a head chosen by hand
    with pytest.raises(ValueError, match="paper recipe never"):
        TrainConfig(recipe="paper", speaker_norm="on")
    with pytest.raises(ValueError, match="speaker_norm must be"):
        TrainConfig(speaker_norm="sometimes")
    head = FinetuneConfig().head_config()
    assert (head.select, head.speaker_norm) == (False, "off")


def test_selected_adapting_bundle_records_saves_and_evaluates_alike(tmp_path, capsys):
    table = with_speakers(tone_table(tmp_path))
    store = FeatureStore(tmp_path / "store")
    run = train_and_evaluate(
        table, LABELS, modality="both", store=store, speech="toy-speech", text="toy-text",
        config=TrainConfig(speaker_norm="on", **SMALL), out_dir=tmp_path / "b", progress=True,
    )  # fmt: skip
    log = capsys.readouterr().err
    assert "model selection by CV on 33 rows" in log
    assert "speaker statistics: on" in log and "refit on train + val" in log
    assert run.trained.speaker_norm is not None
    config = json.loads((run.bundle_dir / "config.json").read_text())
    record = config["selection"]
    assert record["choice"] and len(record["candidates"]) > 3
    assert all("uar" in c for c in record["candidates"])
    assert record["speaker_norm"]["decision"] == "on"
    assert config["speaker_norm"]["k"] > 0
    # calibrated on the winner's out-of-fold logits (every speaker-norm view pooled)
    assert "calibration: temperature" in log and "out-of-fold" in log
    assert config["temperature"] == pytest.approx(record["temperature"], abs=1e-4)
    assert config["temperature"] != 1.0

    bundle = Bundle.load(run.bundle_dir)
    assert bundle.speaker_norm is not None and set(bundle.modality_heads) == {"speech", "text"}
    np.testing.assert_allclose(bundle.speaker_norm.mean, run.trained.speaker_norm.mean)
    test = table[table["part"] == "test"]
    scored = evaluate_bundle(bundle, test, store=store, progress=False)
    got = scored.predictions.set_index("id")[[f"p_{x}" for x in LABELS]].to_numpy()
    want = run.predictions.set_index("id")[[f"p_{x}" for x in LABELS]].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # statistics come from the speaker's test rows: adapting changes the figures
    bundle.speaker_norm = None
    plain = evaluate_bundle(bundle, test, store=store, progress=False).predictions
    assert not np.allclose(plain[[f"p_{x}" for x in LABELS]].to_numpy(), got)


def test_paper_recipe_and_speakerless_tables_train_as_before(tmp_path, capsys):
    table = tone_table(tmp_path)  # blank speakers
    store = FeatureStore(tmp_path / "store")
    paper = train_and_evaluate(
        table, LABELS, modality="speech", store=store, speech="toy-speech",
        config=TrainConfig(recipe="paper", epochs=2, hidden=8), out_dir=tmp_path / "p",
        progress=False,
    )  # fmt: skip
    config = json.loads((paper.bundle_dir / "config.json").read_text())
    assert "speaker_norm" not in config and "selection" not in config
    assert Bundle.load(paper.bundle_dir).speaker_norm is None  # as a bundle saved before
    assert config["standardizer"]["limit"] is None and config["format_version"] == 1
    small = train_and_evaluate(
        table, LABELS, modality="speech", store=store, speech="toy-speech",
        config=TrainConfig(**SMALL), out_dir=None, progress=True,
    )  # fmt: skip
    assert small.trained.speaker_norm is None
    assert small.trained.selection["speaker_norm"]["decision"] == "off"
    assert "speaker statistics: off" in capsys.readouterr().err


def test_grid_cell_ids_of_earlier_grids_are_stable():
    cell = Cell("script", "", "both", "a", "b", None, "random", 0)
    # ids computed by the code before model selection and speaker_norm existed
    for raw, want in (
        ({}, "999b330108c9"),
        ({"train": {"recipe": "paper"}}, "9fb6a66cfabd"),
        ({"train": {"head": "mlp", "epochs": 5}}, "8e6bc817e45b"),
    ):
        assert cell.cell_id(grid_config_from_dict(raw)) == want
    config = grid_config_from_dict({"grid": {"speaker_norm": ["off", "auto"]}})
    cells = plan_cells(config, {"script": [""]})
    assert {c.speaker_norm for c in cells} == {"off", "auto"}
    assert cell.cell_id(config) == "999b330108c9"  # the axis leaves 'off' cells alone
    assert replace(cell, speaker_norm="auto").cell_id(config) != "999b330108c9"
    assert cell.cell_id(grid_config_from_dict({"train": {"select": True}})) != "999b330108c9"
    with pytest.raises(GridConfigError, match="paper recipe"):
        grid_config_from_dict({"train": {"recipe": "paper"}, "grid": {"speaker_norm": ["auto"]}})


def test_a_head_chosen_by_hand_keeps_its_own_logits(tmp_path):
    """Selection off (only the speaker decision made): no candidate's temperature."""
    table = with_speakers(tone_table(tmp_path))
    run = train_and_evaluate(
        table, LABELS, modality="speech", store=FeatureStore(tmp_path / "store"),
        speech="toy-speech", config=TrainConfig(select=False, speaker_norm="on", **SMALL),
        out_dir=None, progress=False,
    )  # fmt: skip
    assert run.trained.selection["choice"] == "fixed (select off)"
    assert "temperature" not in run.trained.selection and run.trained.temperature == 1.0
    assert run.trained.speaker_norm is not None
