"""`emofuse demo` end to end on a small demo corpus with the real offline encoders."""

from __future__ import annotations

import pandas as pd
import pytest

from emofuse.bundle import Bundle
from emofuse.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(
        ["demo", "-o", str(out), "--speakers", "3", "--scripts-per-emotion", "10",
         "--workers", "1", "--quiet"]
    )  # fmt: skip
    assert code == 0
    return out


def test_demo_writes_results_for_every_modality(demo_run):
    results = pd.read_csv(demo_run / "results.csv")
    assert list(results["modality"]) == ["speech", "text", "both"]
    chance = 1 / 7
    # The demo's prosody carries the emotion: speech is far above chance on unseen sentences.
    assert results.set_index("modality").loc["speech", "uar"] > 2 * chance
    assert (results["n_test"] > 0).all()
    assert (demo_run / "modalities.png").stat().st_size > 10_000
    assert (demo_run / "results.md").read_text().startswith("| modality |")
    # What the score means, under the table: synthetic corpus, an upper bound, the README.
    context = (demo_run / "results.md").read_text().split("\n\n", 1)[1]
    for words in ("3 synthetic voices", "scripted sentences", "upper bound", "held-out figures",
                  "EmoDB, leave-one-speaker-out"):  # fmt: skip
        assert words in context
    for modality in ("speech", "text", "both"):
        assert (demo_run / "bundles" / modality / "evaluation" / "confusion.png").exists()


def test_demo_bundle_predicts_a_corpus_clip(demo_run):
    bundle = Bundle.load(demo_run / "bundles" / "both")
    table = pd.read_parquet(demo_run / "split.parquet")
    row = table[table["part"] == "test"].iloc[0]
    (pred,) = bundle.predict([row["audio"]], [row["text"]])
    assert pred.label in bundle.labels
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_second_demo_run_reuses_corpus_and_features(demo_run, capsys):
    store = demo_run / "features"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("shard-*.npz")}
    assert before
    assert main(["demo", "-o", str(demo_run), "--speakers", "3", "--scripts-per-emotion",
                 "10", "--workers", "1", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "reusing the demo corpus" in out
    # Under the table, three lines say what the score means.
    table_end = out.index("| both |")
    context = out[table_end:].split("\n\n")[1].splitlines()
    assert len(context) == 3 and "synthetic" in context[0] and "README" in out[table_end:]
    # Nothing new was extracted: the same shards, untouched.
    after = {p: p.stat().st_mtime_ns for p in store.rglob("shard-*.npz")}
    assert after == before
