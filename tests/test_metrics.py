"""Metrics on hand-checked examples, and the files write_metrics leaves behind."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from emofuse.metrics import compute_metrics, format_metrics, write_metrics

LABELS = ["happy", "sad", "angry"]


def test_hand_checked_imbalanced_example():
    # 8 happy (7 right), 2 sad (0 right, both called happy), 0 angry, 1 sad predicted angry.
    y_true = ["happy"] * 8 + ["sad"] * 2
    y_pred = ["happy"] * 7 + ["angry"] + ["happy", "happy"]
    m = compute_metrics(y_true, y_pred, LABELS)
    # accuracy = 7/10; recall happy = 7/8, sad = 0/2 -> UAR over present classes = 0.4375
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["uar"] == pytest.approx((7 / 8 + 0) / 2)
    assert m["uar"] != pytest.approx(m["accuracy"])
    assert m["confusion"] == [[7, 0, 1], [2, 0, 0], [0, 0, 0]]
    happy = m["per_class"]["happy"]
    assert happy["precision"] == pytest.approx(7 / 9)
    assert happy["recall"] == pytest.approx(7 / 8)
    assert happy["support"] == 8
    assert m["per_class"]["angry"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # F1 happy = 2 * (7/9)(7/8) / (7/9 + 7/8) = 14/17; sad and angry 0 -> macro over 3 seen
    assert m["macro_f1"] == pytest.approx((14 / 17) / 3)
    assert m["labels"] == LABELS and m["n"] == 10


def test_agrees_with_sklearn_on_random_labels():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 3, 200))
    m = compute_metrics(y_true, y_pred, LABELS)
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert "UAR" in format_metrics(m)


def test_rejects_unknown_labels_and_length_mismatch():
    with pytest.raises(ValueError, match="boredom"):
        compute_metrics(["happy", "boredom"], ["happy", "sad"], LABELS)
    with pytest.raises(ValueError, match="items"):
        compute_metrics(["happy"], ["happy", "sad"], LABELS)


def test_write_metrics_files(tmp_path):
    seven = ["happy", "anxious", "angry", "sad", "embarrassed", "neutral", "hurt"]
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.5, y_true, rng.integers(0, 7, 300))
    m = compute_metrics(y_true, y_pred, seven)
    out = write_metrics(m, tmp_path / "eval")
    assert json.loads((out / "metrics.json").read_text())["uar"] == pytest.approx(m["uar"])
    png = (out / "confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(out / "confusion.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][1:] == seven
    assert [int(v) for v in rows[1][1:]] == m["confusion"][0]
    with open(out / "per_class.csv", encoding="utf-8") as fh:
        per_class = list(csv.DictReader(fh))
    assert [r["label"] for r in per_class] == seven
    assert sum(int(r["support"]) for r in per_class) == 300


def test_plot_with_korean_labels_does_not_fail(tmp_path):
    korean = ["기쁨", "슬픔", "분노"]
    m = compute_metrics(["기쁨", "슬픔", "분노", "기쁨"], ["기쁨", "분노", "분노", "기쁨"], korean)
    out = write_metrics(m, tmp_path)
    assert (out / "confusion.png").stat().st_size > 5_000


def test_write_metrics_with_probabilities_adds_ece_nll_and_the_reliability_diagram(tmp_path):
    y_true = ["happy", "sad", "angry", "happy"]
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.5, 0.2, 0.3], [0.4, 0.5, 0.1]])
    metrics = compute_metrics(y_true, [LABELS[i] for i in proba.argmax(1)], LABELS)
    write_metrics(metrics, tmp_path, y_true=y_true, proba=proba)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < saved["ece"] < 1 and saved["nll"] > 0
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    write_metrics(metrics, tmp_path / "plain")
    assert not (tmp_path / "plain" / "reliability.png").exists()
    assert "ece" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
