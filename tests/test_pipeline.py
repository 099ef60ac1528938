"""train_and_evaluate end to end: feature store -> head -> metrics -> bundle, on toy
encoders (fast, exact) and on real EmoDB speech with the real offline encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_bundle import LABELS, ToySpeech, ToyText, make_clips

from emofuse.bundle import Bundle
from emofuse.features import FeatureStore
from emofuse.head.train import TrainConfig
from emofuse.pipeline import PipelineError, evaluate_bundle, train_and_evaluate

CONFIG = TrainConfig(epochs=15, hidden=16, lr=1e-2, batch_size=8)


def tone_table(tmp_path, per_label=(8, 3, 4)) -> pd.DataFrame:
    rows = []
    for part, n, seed in zip(("train", "val", "test"), per_label, (1, 2, 3), strict=True):
        paths, texts, y = make_clips(tmp_path / "clips" / part, n, seed=seed)
        for path, text, k in zip(paths, texts, y, strict=True):
            rows.append(
                {"id": f"{part}-{path.stem}", "audio": str(path), "text": text,
                 "label": LABELS[k], "speaker": "", "script": "", "duration_s": 0.5,
                 "source_split": "", "part": part}
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def counted(monkeypatch):
    calls = {"speech": 0, "text": 0}
    speech_encode, text_encode = ToySpeech.encode, ToyText.encode

    def count_speech(self, batch):
        calls["speech"] += len(batch)
        return speech_encode(self, batch)

    def count_text(self, batch):
        calls["text"] += len(batch)
        return text_encode(self, batch)

    monkeypatch.setattr(ToySpeech, "encode", count_speech)
    monkeypatch.setattr(ToyText, "encode", count_text)
    return calls


def test_train_evaluate_save_and_reuse_cached_features(tmp_path, counted):
    table = tone_table(tmp_path)
    store = FeatureStore(tmp_path / "store")
    run = train_and_evaluate(
        table, LABELS, modality="both", store=store, speech="toy-speech", text="toy-text",
        config=CONFIG, out_dir=tmp_path / "bundle", provenance={"split": "given"}, progress=False,
    )  # fmt: skip
    assert run.sizes == {"train": 24, "val": 9, "test": 12}
    assert run.metrics["n"] == 12 and run.metrics["uar"] > 0.9
    assert run.val_metrics["n"] == 9
    assert counted["speech"] == len(table)
    assert counted["text"] == table["text"].nunique()  # each distinct sentence once

    evaluation = run.bundle_dir / "evaluation"
    for name in (
        "metrics.json",
        "confusion.csv",
        "confusion.png",
        "per_class.csv",
        "predictions.csv",
    ):
        assert (evaluation / name).exists(), name
    config = json.loads((run.bundle_dir / "config.json").read_text())
    assert config["metrics"]["uar"] == pytest.approx(run.metrics["uar"])
    assert config["provenance"]["split"] == "given"
    assert config["provenance"]["sizes"]["test"] == 12
    train_ids = (run.bundle_dir / "train_ids.txt").read_text().split()
    assert sorted(train_ids) == sorted(table.loc[table["part"] == "train", "id"])

    # The saved bundle, loaded fresh, predicts the test clips as the run did.
    bundle = Bundle.load(run.bundle_dir)
    test = table[table["part"] == "test"]
    predictions = bundle.predict(test["audio"].tolist(), test["text"].tolist())
    frame = run.predictions.set_index("id").loc[test["id"]]
    for prediction, (_, row) in zip(predictions, frame.iterrows(), strict=True):
        assert prediction.label == row["predicted"]
        assert prediction.probabilities["happy"] == pytest.approx(
            row["p_happy"], rel=1e-5, abs=1e-7
        )

    # Scoring rows the bundle was trained on is flagged, never passed off as new data.
    assert bundle.training_ids() == set(train_ids)
    on_test = evaluate_bundle(bundle, test, store=store, progress=False)
    assert on_test.seen_in_training == 0
    assert on_test.metrics["uar"] == pytest.approx(run.metrics["uar"])
    assert evaluate_bundle(bundle, table, store=store, progress=False).seen_in_training == 24

    # A second run with the same store computes no vector at all.
    counted.update(speech=0, text=0)
    again = train_and_evaluate(
        table, LABELS, modality="both", store=store, speech="toy-speech", text="toy-text",
        config=CONFIG, out_dir=None, progress=False,
    )  # fmt: skip
    assert counted == {"speech": 0, "text": 0}
    assert again.metrics == run.metrics  # seeded: same features, same model, same scores

    # evaluate_bundle scores the same test rows the same way, from the store.
    scored = evaluate_bundle(bundle, test, store=store, out_dir=tmp_path / "eval", progress=False)
    assert counted["speech"] == 0
    assert scored.metrics["confusion"] == run.metrics["confusion"]
    assert (tmp_path / "eval" / "confusion.png").exists()


def test_rows_with_failed_features_are_dropped_and_reported(tmp_path, capsys):
    table = tone_table(tmp_path, per_label=(6, 2, 3))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"this is not audio")
    table.loc[[0, len(table) - 1], "audio"] = str(broken)  # one train row, one test row
    run = train_and_evaluate(
        table, LABELS, modality="speech", store=tmp_path / "store", speech="toy-speech",
        config=CONFIG, out_dir=tmp_path / "bundle", progress=False,
    )  # fmt: skip
    assert sorted(run.dropped["part"]) == ["test", "train"]
    assert all("broken.wav" in reason for reason in run.dropped["reason"])
    assert run.sizes["train"] == 17 and run.metrics["n"] == 8
    assert "dropped 2 of 33 rows" in capsys.readouterr().err
    dropped = pd.read_csv(run.bundle_dir / "evaluation" / "dropped.csv")
    assert set(dropped["id"]) == {table.loc[0, "id"], table.loc[len(table) - 1, "id"]}


def test_clear_errors_for_bad_requests(tmp_path):
    table = tone_table(tmp_path, per_label=(2, 1, 1))
    store = tmp_path / "store"
    with pytest.raises(PipelineError, match="needs a text encoder"):
        train_and_evaluate(table, LABELS, modality="both", store=store, speech="toy-speech")
    with pytest.raises(PipelineError, match="no 'part' column"):
        train_and_evaluate(
            table.drop(columns="part"), LABELS, modality="speech", store=store, speech="toy-speech"
        )
    with pytest.raises(PipelineError, match="not in the class list"):
        train_and_evaluate(
            table, ["happy", "sad"], modality="speech", store=store, speech="toy-speech"
        )


@pytest.mark.slow
def test_real_emodb_speech_beats_text_with_offline_encoders(emodb_dir, tmp_path):
    """EmoDB: every sentence is read in every emotion, so text carries no emotion and an
    honest text model sits near chance while eGeMAPS speech is well above it."""
    from emofuse.corpus import read_corpus
    from emofuse.splits import assign_split

    scan = read_corpus(emodb_dir / "manifest.csv", layout="manifest", progress=False)
    # Up to 4 clips per speaker and emotion (~150 of 304) keeps eGeMAPS extraction short.
    subset = scan.table.groupby(["speaker", "label"], sort=False).head(4)
    table = assign_split(subset, "speaker", test_size=0.34, val_size=0.17, seed=0)
    store = FeatureStore(tmp_path / "store")
    config = TrainConfig(epochs=30, hidden=64, seed=0)
    speech = train_and_evaluate(
        table, scan.labels, modality="speech", store=store, speech="egemaps",
        config=config, out_dir=tmp_path / "speech", progress=False,
    )  # fmt: skip
    text = train_and_evaluate(
        table, scan.labels, modality="text", store=store, text="kiwi-tfidf",
        config=config, out_dir=None, progress=False,
    )  # fmt: skip
    chance = 1 / len(scan.labels)
    assert speech.metrics["uar"] > chance + 0.2, speech.metrics["uar"]
    assert text.metrics["uar"] < chance + 0.15, text.metrics["uar"]
    assert np.isclose(sum(speech.sizes.values()), len(table) - speech.dropped["id"].nunique())
    clip = table.loc[table["part"] == "test", "audio"].iloc[0]
    (prediction,) = Bundle.load(tmp_path / "speech").predict([clip])
    assert prediction.label in scan.labels


# ----------------------------------------------------------------------------- the CLI


def test_cli_train_evaluate_predict(tmp_path, capsys):
    from emofuse.cli import main
    from emofuse.corpus.table import write_table

    table = tone_table(tmp_path, per_label=(6, 2, 3))
    split = write_table(table, tmp_path / "split.parquet", LABELS)
    bundle = tmp_path / "bundle"
    code = main(
        ["train", str(split), "--modality", "both", "--speech", "toy-speech", "--text", "toy-text",
         "--store", str(tmp_path / "store"), "-o", str(bundle), "--epochs", "12", "--hidden", "16",
         "--lr", "0.01", "--batch-size", "8", "--split-strategy", "given", "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "UAR" in out and "bundle written to" in out
    config = json.loads((bundle / "config.json").read_text())
    assert config["training"]["config"]["epochs"] == 12
    assert config["provenance"]["split_strategy"] == "given"

    code = main(["evaluate", str(bundle), str(split), "--part", "test", "-o", str(tmp_path / "ev"),
                 "--store", str(tmp_path / "store"), "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "UAR 1.000" in out and (tmp_path / "ev" / "confusion.png").exists()

    clip = table.loc[table["part"] == "test"].iloc[0]
    assert main(["predict", str(bundle), clip["audio"], "--text", clip["text"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"label: {clip['label']}") and all(label in out for label in LABELS)

    assert main(["predict", str(bundle), clip["audio"]]) == 2
    err = capsys.readouterr().err
    assert "--text '...'" in err and "--asr vosk" in err

    manifest = tmp_path / "clips" / "manifest.csv"
    rows = table.loc[table["part"] == "test", ["audio", "text"]].head(4).copy()
    rows["audio"] = [str(Path(a).relative_to(manifest.parent)) for a in rows["audio"]]
    rows.loc[len(rows)] = ["missing.wav", "오늘은 좋아요"]
    rows.loc[len(rows)] = [rows.iloc[0]["audio"], ""]
    rows.to_csv(manifest, index=False)
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", str(bundle), "--manifest", str(manifest), "-o", str(out_csv)]) == 1
    result = pd.read_csv(out_csv, keep_default_na=False)
    assert len(result) == 6
    assert list(result["error"] == "") == [True] * 4 + [False, False]
    assert "missing.wav: no such file" in result.loc[4, "error"]
    assert "--asr vosk" in result.loc[5, "error"]
    assert (
        result.loc[:3, "predicted"] == table.loc[table["part"] == "test", "label"].head(4).values
    ).all()
    probabilities = result.loc[:3, [f"p_{label}" for label in LABELS]].astype(float)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
