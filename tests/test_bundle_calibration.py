"""Temperature and single-modality heads stored in a bundle: saved, loaded, applied the
same way by evaluate and predict, on toy encoders (fast, exact)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_bundle import LABELS
from test_pipeline import tone_table

from emofuse.bundle import Bundle
from emofuse.features import FeatureStore
from emofuse.head.calibration import softmax
from emofuse.head.train import TrainConfig
from emofuse.pipeline import train_and_evaluate

SMALL = TrainConfig(
    recipe="small-data", min_steps=40, hidden=16, lr=1e-2, batch_size=8, calibrate=True
)


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrated")
    table = tone_table(tmp)
    run = train_and_evaluate(
        table, LABELS, modality="both", store=FeatureStore(tmp / "store"),
        speech="toy-speech", text="toy-text", config=SMALL, out_dir=tmp / "bundle",
        progress=False,
    )  # fmt: skip
    return tmp, table, run


def test_temperature_is_stored_and_applied_to_bundle_probabilities(both_run):
    tmp, table, run = both_run
    bundle = Bundle.load(run.bundle_dir)
    assert bundle.temperature == pytest.approx(run.trained.temperature)
    assert bundle.temperature != 1.0
    config = json.loads((run.bundle_dir / "config.json").read_text())
    assert config["temperature"] == bundle.temperature
    test = run.predictions
    x = np.hstack([np.asarray(v) for v in bundle_features(run, table)])
    expected = softmax(run.trained.logits(x), run.trained.temperature)
    got = test[[f"p_{label}" for label in LABELS]].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def bundle_features(run, table):
    store = FeatureStore(run.bundle_dir.parent / "store")
    test = table[table["part"] == "test"]
    return [store.get(test, run.encoders[m]) for m in ("speech", "text")]


def test_evaluation_has_ece_nll_and_a_reliability_diagram(both_run):
    _, _, run = both_run
    saved = json.loads((run.bundle_dir / "evaluation" / "metrics.json").read_text())
    assert 0 <= saved["ece"] <= 1 and saved["nll"] >= 0
    assert (run.bundle_dir / "evaluation" / "reliability.png").exists()


def test_both_bundle_reports_each_modality_and_whether_they_agree(both_run, tmp_path):
    tmp, table, run = both_run
    bundle = Bundle.load(run.bundle_dir)
    assert set(bundle.modality_heads) == {"speech", "text"}
    test = table[table["part"] == "test"].reset_index(drop=True)
    predictions = bundle.predict(test["audio"].tolist(), test["text"].tolist())
    speech_x, text_x = bundle_features(run, table)
    for m, x in (("speech", speech_x), ("text", text_x)):
        extra = bundle.modality_heads[m]
        expected = softmax(
            extra.head(extra.standardizer(__import__("torch").from_numpy(x))).detach().numpy(),
            extra.temperature,
        )
        got = np.array([[p.by_modality[m][label] for label in LABELS] for p in predictions])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    for p in predictions:
        speech_label = max(p.by_modality["speech"], key=p.by_modality["speech"].get)
        text_label = max(p.by_modality["text"], key=p.by_modality["text"].get)
        assert p.agree == (speech_label == text_label)

    from emofuse.predict.engine import PredictionEngine
    from emofuse.predict.manifest import predict_manifest

    manifest = tmp_path / "m.csv"
    test[["audio", "text"]].to_csv(manifest, index=False)
    predict_manifest(PredictionEngine(bundle), manifest, tmp_path / "out.csv", progress=False)
    out = pd.read_csv(tmp_path / "out.csv")
    for m in ("speech", "text"):
        np.testing.assert_allclose(
            out[[f"p_{m}_{label}" for label in LABELS]].to_numpy(),
            [[p.by_modality[m][label] for label in LABELS] for p in predictions],
            rtol=1e-5,
        )
    assert out["agree"].tolist() == [p.agree for p in predictions]


def test_single_modality_bundles_carry_no_extra_heads(tmp_path):
    table = tone_table(tmp_path)
    run = train_and_evaluate(
        table, LABELS, modality="speech", store=FeatureStore(tmp_path / "store"),
        speech="toy-speech", config=TrainConfig(recipe="paper", epochs=3, hidden=8),
        out_dir=tmp_path / "bundle", progress=False,
    )  # fmt: skip
    bundle = Bundle.load(run.bundle_dir)
    assert bundle.modality_heads == {} and bundle.temperature == 1.0
    (prediction,) = bundle.predict([table["audio"].iloc[-1]])
    assert prediction.by_modality is None and prediction.agree is None


def test_service_returns_by_modality_and_agree(both_run):
    from fastapi.testclient import TestClient

    from emofuse.serve import create_app

    _, table, run = both_run
    bundle = Bundle.load(run.bundle_dir)
    clip = table[table["part"] == "test"].iloc[0]
    (expected,) = bundle.predict([clip["audio"]], [clip["text"]])
    with TestClient(create_app(bundle)) as client, open(clip["audio"], "rb") as fh:
        response = client.post(
            "/predict", files={"audio": ("clip.wav", fh, "audio/wav")},
            data={"text": clip["text"]},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["by_modality"]) == {"speech", "text"}
    for m in ("speech", "text"):
        for label in LABELS:
            assert body["by_modality"][m][label] == pytest.approx(
                expected.by_modality[m][label], rel=1e-5, abs=1e-7
            )
    assert body["agree"] == expected.agree


def test_the_default_recipe_stores_the_cv_temperature_and_the_clip(tmp_path):
    """Without --calibrate the selected head's probabilities are divided by the
    temperature fitted on its out-of-fold logits; the bundle keeps it and the clip of
    standardised values, and a bundle saved before the clip loads unclipped."""
    from emofuse.head.config import Z_LIMIT

    table = tone_table(tmp_path)
    config = TrainConfig(min_steps=40, hidden=16, lr=1e-2, batch_size=8)
    run = train_and_evaluate(
        table, LABELS, modality="speech", store=FeatureStore(tmp_path / "store"),
        speech="toy-speech", config=config, out_dir=tmp_path / "bundle", progress=False,
    )  # fmt: skip
    selection = run.trained.selection
    assert "skipped" not in selection
    assert run.trained.temperature == pytest.approx(selection["temperature"], abs=1e-4)
    assert run.trained.temperature != 1.0
    written = tmp_path / "bundle" / "config.json"
    saved = json.loads(written.read_text())
    assert saved["temperature"] == run.trained.temperature
    assert saved["standardizer"]["limit"] == Z_LIMIT
    bundle = Bundle.load(tmp_path / "bundle")
    assert bundle.standardizer.limit == Z_LIMIT
    test = table[table["part"] == "test"]
    x = FeatureStore(tmp_path / "store").get(test, run.encoders["speech"])
    expected = softmax(run.trained.logits(np.asarray(x)), run.trained.temperature)
    (first,) = bundle.predict([test["audio"].iloc[0]])
    assert [first.probabilities[label] for label in LABELS] == pytest.approx(
        expected[0].tolist(), rel=1e-5, abs=1e-7
    )
    # a bundle written before the clip existed: no "limit", loaded as it was trained
    del saved["standardizer"]["limit"]
    written.write_text(json.dumps(saved))
    assert Bundle.load(tmp_path / "bundle").standardizer.limit is None
