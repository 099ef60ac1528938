"""Speaker adaptation at prediction time, Python and `predict --manifest`: each clip is
normalised by its speaker's statistics (the call's clips, fixed ones, or running ones
added before scoring), never by labels; every prediction says how many clips that was.

A toy fused bundle (tests/support/toy_bundle.py) gets a speaker normalisation fitted on
its training rows (tests/support/speaker_bundles.py), as `train --speaker-norm on` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.speaker_bundles import adapting, fit_norm, moments_of, speech_vectors
from support.toy_bundle import LABELS, toy_table, train_toy_bundle
from support.toy_encoders import encoded_items

from emofuse.bundle import Bundle, BundleError
from emofuse.cli import main
from emofuse.head.score import probabilities_from_features
from emofuse.head.speaker_stats import Moments
from emofuse.text import clean_text

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("speaker-predict")
    bundle_dir = train_toy_bundle(root)
    return bundle_dir, toy_table(root / "table")


@pytest.fixture(scope="module")
def norm(work):
    bundle_dir, table = work
    return fit_norm(Bundle.load(bundle_dir), table, k=1.0)


@pytest.fixture
def bundle(work, norm) -> Bundle:
    return adapting(Bundle.load(work[0]), norm)


def _p(predictions) -> np.ndarray:
    return np.array([[p.probabilities[label] for label in LABELS] for p in predictions])


def _features(bundle, audio, texts) -> dict[str, np.ndarray]:
    text = bundle.encoder("text").encode([clean_text(t) for t in texts])
    return {"speech": speech_vectors(bundle, audio), "text": text}


# ----------------------------------------------------------------------------- Python


def test_each_speaker_is_adapted_to_its_clips_in_the_call(bundle, work):
    table = work[1]
    rows = table[table["speaker"].isin(["spk2", "spk3"])].reset_index(drop=True)
    speakers = list(rows["speaker"])
    speakers[0] = "solo"  # a speaker with one clip
    speakers[1] = ""  # no speaker: not adapted
    got = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker=speakers)
    features = _features(bundle, rows["audio"], rows["text"])
    expected = probabilities_from_features(bundle, features, speakers=speakers)
    np.testing.assert_allclose(_p(got), expected, atol=TOLERANCE)
    counts = pd.Series([s for s in speakers if s]).value_counts()
    assert [p.speaker_clips for p in got] == [counts[s] if s else None for s in speakers]
    assert got[0].speaker_clips == 1 and np.isfinite(_p(got)).all()
    unadapted = _p(bundle.predict(list(rows["audio"]), list(rows["text"])))
    np.testing.assert_allclose(_p(got)[1], unadapted[1], atol=TOLERANCE)
    assert np.abs(_p(got) - unadapted).max() > 1e-3  # adaptation changed something
    assert all(p.speaker_clips is None for p in bundle.predict(rows["audio"], rows["text"]))


def test_one_name_for_every_clip_and_names_that_do_not_fit(bundle, work):
    table = work[1]
    rows = table[table["speaker"] == "spk3"]
    one = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker="caller-7")
    each = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker=["x"] * len(rows))
    np.testing.assert_allclose(_p(one), _p(each), atol=TOLERANCE)
    assert {p.speaker_clips for p in one} == {len(rows)}
    with pytest.raises(BundleError, match="speaker names"):
        bundle.predict(list(rows["audio"]), list(rows["text"]), speaker=["a", "b"])


def test_a_bundle_that_does_not_adapt_ignores_speakers(work):
    bundle_dir, table = work
    plain = Bundle.load(bundle_dir)
    rows = table.head(4)
    named = plain.predict(list(rows["audio"]), list(rows["text"]), speaker="x")
    np.testing.assert_allclose(_p(named), _p(plain.predict(rows["audio"], rows["text"])))
    assert all(p.speaker_clips is None for p in named)


def test_running_statistics_count_each_clip_before_scoring_it(bundle, work):
    table = work[1]
    rows = table[table["speaker"] == "spk3"].reset_index(drop=True)
    audio, texts = list(rows["audio"]), list(rows["text"])
    running: dict[str, Moments] = {}
    first = bundle.predict(audio[:4], texts[:4], speaker="s", running_stats=running)
    assert [p.speaker_clips for p in first] == [1, 2, 3, 4] and running["s"].count == 4
    later = bundle.predict(audio[4:], texts[4:], speaker="s", running_stats=running)
    assert [p.speaker_clips for p in later] == list(range(5, len(rows) + 1))
    # clip i was scored with the statistics of clips 1..i, exactly
    for i, prediction in enumerate(first + later):
        stats = {"s": moments_of(bundle, audio[: i + 1], texts[: i + 1])}
        (fixed,) = bundle.predict([audio[i]], [texts[i]], speaker="s", speaker_stats=stats)
        np.testing.assert_allclose(_p([prediction]), _p([fixed]), atol=TOLERANCE)
        assert fixed.speaker_clips == i + 1
    whole = moments_of(bundle, audio, texts)
    np.testing.assert_allclose(running["s"].mean, whole.mean, atol=1e-9)
    assert running["s"].count == whole.count


def test_a_failed_call_adds_nothing_to_running_statistics(bundle, work, tmp_path):
    table = work[1]
    audio = [*table["audio"].head(2), str(tmp_path / "missing.wav")]
    running: dict[str, Moments] = {}
    with pytest.raises(ValueError, match="missing.wav"):
        bundle.predict(audio, list(table["text"].head(3)), speaker="s", running_stats=running)
    assert running == {}
    from emofuse.predict import PredictInput, PredictionEngine

    engine = PredictionEngine(bundle)
    items = [PredictInput(a, t, speaker="s") for a, t in zip(audio, table["text"], strict=False)]
    outcomes = engine.predict_each(items, running_stats=running)
    assert outcomes[2].error is not None and running["s"].count == 2
    assert [o.prediction.speaker_clips for o in outcomes[:2]] == [1, 2]


def test_fixed_statistics_without_the_speaker_leave_it_unadapted(bundle, work):
    rows = work[1].head(3)
    got = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker="nobody",
                         speaker_stats={})  # fmt: skip
    np.testing.assert_allclose(_p(got), _p(bundle.predict(rows["audio"], rows["text"])))
    assert [p.speaker_clips for p in got] == [0, 0, 0]


# ----------------------------------------------------------------------------- manifest


def _manifest(table: pd.DataFrame, path: Path, speakers: list[str]) -> Path:
    frame = table[["id", "audio", "text"]].assign(speaker=speakers)
    frame.to_csv(path, index=False)
    return path


def _predict(bundle_dir: Path, *argv: str) -> int:
    return main(["predict", str(bundle_dir), *argv, "--plugin", "support.toy_encoders",
                 "--no-progress"])  # fmt: skip


@pytest.fixture
def cli_adapts(monkeypatch, norm):
    """`emofuse predict` loads bundles that carry ``norm``."""
    from emofuse.cli.common import load_bundle

    monkeypatch.setattr(
        "emofuse.cli.predict.load_bundle", lambda path: adapting(load_bundle(path), norm)
    )


def test_manifest_rows_are_grouped_by_speaker_over_chunks(
    work, bundle, cli_adapts, tmp_path, monkeypatch
):
    bundle_dir, table = work
    table = table.reset_index(drop=True)
    speakers = list(table["speaker"])
    speakers[3] = speakers[11] = ""  # blank cells: those rows are not adapted
    speakers[5] = "solo"  # one clip
    table.loc[7, "audio"] = str(tmp_path / "gone.wav")  # fails, adds nothing
    manifest = _manifest(table, tmp_path / "m.csv", speakers)
    out = tmp_path / "out" / "p.csv"
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    monkeypatch.setattr("emofuse.predict.manifest.MANIFEST_CHUNK_ROWS", 5)
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(out)) == 1  # one error
    adapted_encodes = encoded_items(log)
    log.unlink()
    plain = tmp_path / "plain.csv"
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(plain),
                    "--no-speaker-adapt") == 1  # fmt: skip
    assert adapted_encodes == encoded_items(log)  # two passes, each row encoded once
    monkeypatch.delenv("TOY_ENCODE_LOG")
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.csv"]  # temporary files gone
    got = pd.read_csv(out, keep_default_na=False, dtype={"speaker_clips": str})
    assert list(got["id"]) == list(table["id"])
    assert got.loc[7, "error"] and got.loc[7, "speaker_clips"] == ""

    good = [i for i in range(len(table)) if i != 7]
    direct = bundle.predict(list(table["audio"][good]), list(table["text"][good]),
                            speaker=[speakers[i] for i in good])  # fmt: skip
    probs = got.loc[good, [f"p_{label}" for label in LABELS]].astype(float).to_numpy()
    np.testing.assert_allclose(probs, _p(direct), atol=TOLERANCE)
    clips = ["" if p.speaker_clips is None else str(p.speaker_clips) for p in direct]
    assert list(got["speaker_clips"][good]) == clips
    assert got.loc[3, "speaker_clips"] == "" and got.loc[5, "speaker_clips"] == "1"


def test_a_manifest_without_a_speaker_column_says_so_once(work, cli_adapts, tmp_path, capsys):
    bundle_dir, table = work
    manifest = tmp_path / "m.csv"
    table[["id", "audio", "text"]].to_csv(manifest, index=False)
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(tmp_path / "p.csv")) == 0
    err = capsys.readouterr().err
    assert err.count("adapts to speakers") == 1 and "no `speaker` column" in err
    got = pd.read_csv(tmp_path / "p.csv", keep_default_na=False, dtype=str)
    assert (got["speaker_clips"] == "").all()
    code = _predict(bundle_dir, "--manifest", str(manifest), "-o", str(tmp_path / "q.csv"),
                    "--speaker-column", "caller")  # fmt: skip
    assert code == 2 and "no column 'caller'" in capsys.readouterr().err


def test_speaker_column_by_name_and_switched_off(work, cli_adapts, tmp_path, capsys):
    bundle_dir, table = work
    manifest = tmp_path / "m.csv"
    table[["id", "audio", "text"]].assign(Caller=table["speaker"]).to_csv(manifest, index=False)
    out = tmp_path / "p.csv"
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(out),
                    "--speaker-column", "caller") == 0  # fmt: skip
    assert set(pd.read_csv(out)["speaker_clips"]) == {6}
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(out),
                    "--no-speaker-adapt") == 0  # fmt: skip
    assert "--no-speaker-adapt" in capsys.readouterr().err
    assert pd.read_csv(out)["speaker_clips"].isna().all()


def test_a_bundle_that_does_not_adapt_has_no_speaker_clips_column(work, tmp_path, capsys):
    bundle_dir, table = work
    manifest = _manifest(table, tmp_path / "m.csv", list(table["speaker"]))
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(tmp_path / "p.csv")) == 0
    assert "speaker_clips" not in pd.read_csv(tmp_path / "p.csv").columns
    assert "adapts" not in capsys.readouterr().err


def test_a_composition_correction_keeps_its_own_statistics(work, norm, tmp_path):
    """With a composition correction a speaker's statistics are wider than the speech block
    (SpeakerNorm.statistics of whole rows): every path accumulates those, never raw rows."""
    from dataclasses import replace

    from emofuse.head.speaker_norm import Composition
    from emofuse.predict import PredictionEngine
    from emofuse.predict.speakers import predict_by_speaker

    bundle_dir, table = work
    plain = Bundle.load(bundle_dir)
    width, rng = plain.head.input_dim, np.random.default_rng(0)
    composition = Composition(
        rng.normal(size=(len(LABELS), width)), np.zeros(len(LABELS)), np.zeros(width),
        np.ones(width), rng.normal(scale=0.01, size=(len(LABELS), norm.dim)),
    )  # fmt: skip
    bundle = adapting(plain, replace(norm, composition=composition))
    rows = table[table["speaker"] == "spk1"].reset_index(drop=True)
    audio, texts = list(rows["audio"]), list(rows["text"])
    running: dict[str, Moments] = {}
    stepwise = bundle.predict(audio, texts, speaker="s", running_stats=running)
    assert running["s"].dim == 2 * norm.dim and running["s"].count == len(rows)
    whole = bundle.predict(audio, texts, speaker="s")
    np.testing.assert_allclose(_p(stepwise)[-1], _p(whole)[-1], atol=TOLERANCE)
    manifest = _manifest(rows, tmp_path / "m.csv", ["s"] * len(rows))
    predict_by_speaker(PredictionEngine(bundle), manifest, tmp_path / "p.csv", column="speaker",
                       progress=False)  # fmt: skip
    got = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(got[[f"p_{x}" for x in LABELS]], _p(whole), atol=TOLERANCE)


def test_a_manifest_edited_between_the_two_passes_is_refused(
    work, cli_adapts, tmp_path, monkeypatch, capsys
):
    """The vectors of the first pass must meet their own rows in the second: a manifest
    rewritten in between (rows swapped) is an error, never rows scored with another
    row's vector."""
    from emofuse.predict import speakers as speaker_pass

    bundle_dir, table = work
    table = table.reset_index(drop=True).head(6)
    manifest = _manifest(table, tmp_path / "m.csv", list(table["speaker"]))
    real = speaker_pass.SpeakerPass.first_pass

    def then_edit(self):  # the second pass's reader has the first version already
        _manifest(table.iloc[::-1], manifest, list(table["speaker"])[::-1])
        real(self)

    monkeypatch.setattr(speaker_pass.SpeakerPass, "first_pass", then_edit)
    out = tmp_path / "p.csv"
    assert _predict(bundle_dir, "--manifest", str(manifest), "-o", str(out)) != 0
    assert "changed while it was read" in capsys.readouterr().err
    assert not out.exists()


def test_one_clip_with_a_model_that_adapts_says_it_was_scored_unadapted(work, cli_adapts, capsys):
    bundle_dir, table = work
    row = table.iloc[0]
    assert _predict(bundle_dir, str(row["audio"]), "--text", str(row["text"])) == 0
    err = capsys.readouterr().err
    assert "adapts to speakers" in err and "scored unadapted" in err
