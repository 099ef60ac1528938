"""A text-only corpus end to end: prepare -> split -> train -> evaluate -> predict ->
serve, with the offline text encoders, and the one-line refusal of speech/both models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_text_only import text_manifest

from emofuse.bundle import Bundle
from emofuse.cli import main
from emofuse.corpus import read_table
from emofuse.pipeline import PipelineError, evaluate_bundle, train_and_evaluate
from emofuse.serve import create_app

TRAIN_FLAGS = ["--epochs", "30", "--hidden", "16", "--lr", "0.01", "--batch-size", "8",
               "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A text-only manifest prepared and split (stratified) through the CLI."""
    root = tmp_path_factory.mktemp("text-only")
    manifest = text_manifest(root / "texts.csv", per_label=12)
    assert main(["prepare", str(manifest), "-o", str(root / "corpus.parquet"), "--quiet"]) == 0
    assert main(["split", str(root / "corpus.parquet"), "--strategy", "stratified",
                 "--test-size", "0.25", "--val-size", "0.25", "-o",
                 str(root / "split.parquet")]) == 0  # fmt: skip
    return root / "split.parquet"


def test_cli_train_evaluate_predict_on_a_text_only_corpus(split, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    store = tmp_path / "store"
    code = main(["train", str(split), "--modality", "text", "--text", "kiwi-sparse",
                 "--store", str(store), "-o", str(bundle), *TRAIN_FLAGS])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "UAR" in out and (bundle / "config.json").exists()

    code = main(["evaluate", str(bundle), str(split), "--part", "test", "-o",
                 str(tmp_path / "ev"), "--store", str(store), "--no-progress"])  # fmt: skip
    assert code == 0 and "UAR" in capsys.readouterr().out

    table, labels = read_table(split)
    test = table[table["part"] == "test"]
    assert main(["predict", str(bundle), "--text", test["text"].iloc[0]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("label: ") and all(label in out for label in labels)

    manifest = tmp_path / "to_predict.csv"
    test[["text"]].to_csv(manifest, index=False)  # a text column only
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", str(bundle), "--manifest", str(manifest), "-o", str(out_csv)]) == 0
    result = pd.read_csv(out_csv, keep_default_na=False)
    assert len(result) == len(test) and (result["error"] == "").all()
    assert set(result["predicted"]) <= set(labels)
    # The words decide the label: the model gets most of the test sentences right.
    assert (result["predicted"].to_numpy() == test["label"].to_numpy()).mean() > 0.6


@pytest.mark.parametrize("modality", ["speech", "both"])
def test_speech_and_fused_training_refuse_a_text_only_corpus(split, tmp_path, capsys, modality):
    code = main(["train", str(split), "--modality", modality, "--store", str(tmp_path / "s"),
                 "-o", str(tmp_path / "b"), "--no-progress"])  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1  # one line says why
    assert "has no audio" in errors[0] and f"--modality {modality}" in errors[0]
    assert not (tmp_path / "b").exists()
    table, labels = read_table(split)
    with pytest.raises(PipelineError, match="has no audio"):
        train_and_evaluate(table, labels, modality=modality, store=tmp_path / "s",
                           speech="egemaps", text="kiwi-tfidf", progress=False)  # fmt: skip


@pytest.mark.parametrize("spec", ["kiwi-sparse", "kiwi-tfidf?dim=8"])
def test_a_saved_text_bundle_predicts_what_training_scored(split, tmp_path, spec):
    """Both the new default and the old 256-d encoder (as a spec): the bundle reloads and
    gives the probabilities the training run computed for its test rows, through the
    Python API, evaluation and the service."""
    table, labels = read_table(split)
    run = train_and_evaluate(
        table, labels, modality="text", store=tmp_path / "store", text=spec,
        out_dir=tmp_path / "bundle", progress=False,
    )  # fmt: skip
    bundle = Bundle.load(tmp_path / "bundle")
    assert bundle.modality == "text" and not bundle.needs_audio
    test = table[table["part"] == "test"]
    columns = [f"p_{label}" for label in labels]
    expected = run.predictions[columns].to_numpy(dtype=float)
    got = np.array([[p.probabilities[lab] for lab in labels]
                    for p in bundle.predict(None, test["text"].tolist())])  # fmt: skip
    assert np.allclose(got, expected, atol=1e-5)
    evaluated = evaluate_bundle(bundle, test, store=tmp_path / "store2", progress=False)
    assert np.allclose(evaluated.predictions[columns].to_numpy(dtype=float), expected, atol=1e-5)

    with TestClient(create_app(bundle)) as client:
        response = client.post("/predict", data={"text": test["text"].iloc[0]})
        assert response.status_code == 200, response.text
        assert [response.json()["probabilities"][lab] for lab in labels] == pytest.approx(
            list(expected[0]), abs=1e-4
        )
        assert client.get("/health").json()["needs_audio"] is False


def test_extract_text_vectors_of_a_text_only_corpus_and_refuse_speech(split, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["extract", str(split), "--text", "kiwi-sparse", "--store", str(store),
                 "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "0 failed" in out and "text encoder: kiwi-sparse dim=3" in out
    code = main(["extract", str(split), "--speech", "egemaps", "--store", str(store),
                 "--no-progress"])  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and "has no audio" in errors[0]
    assert not (store / "speech").exists()  # nothing recorded as failed per row
