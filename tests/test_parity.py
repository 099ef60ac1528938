"""One clip, one answer: `emofuse evaluate`, `emofuse predict --manifest`, the service's
`/predict/batch` and `Bundle.predict` give the same labels and probabilities (to 1e-5)
over the same clips and transcripts, for speech, text and fused bundles, including two
transcripts that differ only in their end punctuation ("!" and "?" carry emotion, so
they must get different text vectors). With a speaker normalisation, the same clip and
the same speaker statistics give the same probabilities there too (the manifest's first
pass, the call's clips, running statistics, the service's speaker sessions).

Toy encoders (tests/support/toy_encoders.py) keep it to seconds; the bundles are trained with
`emofuse train` itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.toy_encoders import make_corpus

from emofuse.cli import main

LABELS = ["happy", "sad"]
SPECS = {
    "speech": ("toy-stats", None),
    "text": (None, "toy-chars"),
    "both": ("toy-stats", "toy-chars"),
}
#: Two test transcripts that differ only in the end punctuation.
EXCLAIM, ASK = "정말 좋아요!", "정말 좋아요?"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    from emofuse.corpus.table import write_table

    root = tmp_path_factory.mktemp("parity")
    table = make_corpus(root, n=18)
    extra = []
    for k, text in enumerate((EXCLAIM, ASK)):
        audio = root / "wav" / f"p{k:03d}.wav"
        shutil.copy(table["audio"].iloc[k], audio)
        row = table.iloc[k].to_dict()
        row.update(id=f"p{k:03d}", audio=str(audio), text=text, part="test", script=f"p{k}")
        extra.append(row)
    table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    split = write_table(table, root / "split.parquet", LABELS)
    return split, table


def _run(argv: list[str]) -> None:
    assert main([*argv, "--plugin", "support.toy_encoders", "--no-progress"]) == 0, argv


@pytest.fixture(scope="module")
def bundles(corpus, tmp_path_factory) -> dict[str, Path]:
    split, _ = corpus
    work = tmp_path_factory.mktemp("parity-bundles")
    out = {}
    for modality, (speech, text) in SPECS.items():
        argv = ["train", str(split), "--modality", modality, "--store", str(work / "store")]
        argv += ["--speech", speech] if speech else []
        argv += ["--text", text] if text else []
        argv += ["-o", str(work / modality), "--epochs", "8", "--hidden", "8", "--lr", "0.03"]
        _run(argv)
        out[modality] = work / modality
    return out


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"p_{label}" for label in LABELS]].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("modality", list(SPECS))
def test_evaluate_predict_serve_and_api_agree(modality, corpus, bundles, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from emofuse.bundle import Bundle
    from emofuse.serve import ServeLimits, create_app

    split, table = corpus
    bundle_dir = bundles[modality]
    test = table[table["part"] == "test"].reset_index(drop=True)

    # emofuse evaluate BUNDLE TABLE --part test -o E (a fresh store: computed from scratch)
    _run(["evaluate", str(bundle_dir), str(split), "--part", "test", "-o", str(tmp_path / "E"),
          "--store", str(tmp_path / "eval-store")])  # fmt: skip
    evaluated = pd.read_csv(tmp_path / "E" / "predictions.csv", dtype={"id": str})
    evaluated = evaluated.set_index("id").loc[test["id"]]

    # emofuse predict BUNDLE --manifest M -o P (chunks of 4 rows, so it streams)
    manifest = tmp_path / "clips.csv"
    test[["id", "audio", "text"]].to_csv(manifest, index=False)
    monkeypatch.setattr("emofuse.predict.manifest.MANIFEST_CHUNK_ROWS", 4)
    _run(["predict", str(bundle_dir), "--manifest", str(manifest), "-o", str(tmp_path / "P.csv")])
    predicted = pd.read_csv(tmp_path / "P.csv", dtype={"id": str}, keep_default_na=False)
    assert list(predicted["id"]) == list(test["id"]) and not predicted["error"].any()

    assert list(predicted["predicted"]) == list(evaluated["predicted"])
    np.testing.assert_allclose(_probabilities(predicted), _probabilities(evaluated), atol=TOLERANCE)

    # Bundle.predict and /predict/batch over the same clips and transcripts
    bundle = Bundle.load(bundle_dir)
    direct = bundle.predict(list(test["audio"]), list(test["text"]))
    direct_p = np.array([[p.probabilities[label] for label in LABELS] for p in direct])
    np.testing.assert_allclose(direct_p, _probabilities(evaluated), atol=TOLERANCE)
    assert [p.label for p in direct] == list(evaluated["predicted"])

    limits = ServeLimits(max_batch_files=len(test))
    with TestClient(create_app(bundle, limits=limits, warm=False)) as client:
        files = [
            ("audio", (Path(a).name, Path(a).read_bytes(), "audio/wav")) for a in test["audio"]
        ]
        items = client.post("/predict/batch", files=files, data={"texts": list(test["text"])})
    assert items.status_code == 200, items.text
    served = items.json()
    assert [i["status"] for i in served] == [200] * len(test)
    served_p = np.array([[i["result"]["probabilities"][label] for label in LABELS] for i in served])
    np.testing.assert_allclose(served_p, _probabilities(evaluated), atol=TOLERANCE)
    assert [i["result"]["label"] for i in served] == list(evaluated["predicted"])

    if modality != "speech":  # "!" and "?" are different sentences to a text model
        rows = [test.index[test["text"] == t][0] for t in (EXCLAIM, ASK)]
        for probabilities in (_probabilities(evaluated), _probabilities(predicted)):
            assert not np.allclose(probabilities[rows[0]], probabilities[rows[1]], atol=1e-6)


# ----------------------------------------------------------------- speaker statistics

ADAPTING = ("speech", "both")


@pytest.fixture(scope="module")
def norms(corpus, bundles) -> dict:
    """A speaker normalisation per bundle, fitted on the training rows (what
    `train --speaker-norm on` stores)."""
    from support.speaker_bundles import fit_norm

    from emofuse.bundle import Bundle

    _, table = corpus
    return {m: fit_norm(Bundle.load(bundles[m]), table, k=1.0) for m in ADAPTING}


def _adapting(bundle_dir: Path, norm):
    from support.speaker_bundles import adapting

    from emofuse.bundle import Bundle

    return adapting(Bundle.load(bundle_dir), norm)


@pytest.mark.parametrize("modality", ADAPTING)
def test_speaker_statistics_agree_in_predict_serve_and_api(
    modality, corpus, bundles, norms, tmp_path, monkeypatch
):
    """The same clip with the same speaker statistics: the same probabilities from
    `predict --manifest` (statistics from its first pass, over chunks), Bundle.predict
    (the call's clips, or running statistics) and the service's speaker sessions. The
    test part has a speaker with six clips and two with one clip each."""
    from fastapi.testclient import TestClient

    from emofuse.serve import ServeLimits, create_app

    _, table = corpus
    bundle = _adapting(bundles[modality], norms[modality])
    test = table[table["part"] == "test"].reset_index(drop=True)
    speakers = list(test["speaker"])
    assert sorted(pd.Series(speakers).value_counts()) == [1, 1, 6]

    direct = bundle.predict(list(test["audio"]), list(test["text"]), speaker=speakers)
    direct_p = np.array([[p.probabilities[label] for label in LABELS] for p in direct])
    counts = pd.Series(speakers).value_counts()
    assert [p.speaker_clips for p in direct] == [counts[s] for s in speakers]
    plain = bundle.predict(list(test["audio"]), list(test["text"]))
    plain_p = np.array([[p.probabilities[label] for label in LABELS] for p in plain])
    assert np.abs(direct_p - plain_p).max() > 1e-4  # the statistics matter here

    # emofuse predict --manifest, grouped by the speaker column, read 3 rows at a time
    manifest = tmp_path / "clips.csv"
    test[["id", "audio", "text", "speaker"]].to_csv(manifest, index=False)
    monkeypatch.setattr("emofuse.predict.manifest.MANIFEST_CHUNK_ROWS", 3)
    monkeypatch.setattr(
        "emofuse.cli.predict.load_bundle",
        lambda path: _adapting(Path(path), norms[modality]),
    )
    _run(["predict", str(bundles[modality]), "--manifest", str(manifest), "-o",
          str(tmp_path / "P.csv")])  # fmt: skip
    predicted = pd.read_csv(tmp_path / "P.csv", dtype={"id": str}, keep_default_na=False)
    np.testing.assert_allclose(_probabilities(predicted), direct_p, atol=TOLERANCE)
    assert list(predicted["speaker_clips"]) == [counts[s] for s in speakers]

    # the service: each speaker's clips as one batch to its own session; clip i is scored
    # with the statistics of clips 1..i (added before scoring), as Bundle.predict with
    # running statistics does, and the last with those of all the speaker's clips
    limits = ServeLimits(max_batch_files=len(test))
    with TestClient(create_app(bundle, limits=limits, warm=False)) as client:
        for speaker, rows in test.groupby("speaker", sort=False):
            files = [("audio", (Path(a).name, Path(a).read_bytes(), "audio/wav"))
                     for a in rows["audio"]]  # fmt: skip
            items = client.post(
                "/predict/batch", files=files,
                data={"texts": list(rows["text"]), "speaker": speaker},
            ).json()  # fmt: skip
            served = np.array(
                [[i["result"]["probabilities"][label] for label in LABELS] for i in items]
            )
            assert [i["result"]["speaker_clips"] for i in items] == list(range(1, len(rows) + 1))
            running = bundle.predict(list(rows["audio"]), list(rows["text"]), speaker=speaker,
                                     running_stats={})  # fmt: skip
            np.testing.assert_allclose(
                served, [[p.probabilities[label] for label in LABELS] for p in running],
                atol=TOLERANCE,
            )  # fmt: skip
            np.testing.assert_allclose(served[-1], direct_p[rows.index[-1]], atol=TOLERANCE)


@pytest.mark.parametrize("modality", ADAPTING)
def test_evaluate_adapts_test_rows_like_predict(modality, corpus, bundles, norms, tmp_path):
    """`emofuse evaluate` groups the rows it scores by speaker: the probabilities of
    Bundle.predict with the same speakers."""
    from emofuse.pipeline import evaluate_bundle

    _, table = corpus
    bundle = _adapting(bundles[modality], norms[modality])
    test = table[table["part"] == "test"].reset_index(drop=True)
    result = evaluate_bundle(bundle, test, store=tmp_path / "store", progress=False)
    evaluated = result.predictions.set_index("id").loc[test["id"]]
    direct = bundle.predict(list(test["audio"]), list(test["text"]), speaker=list(test["speaker"]))
    np.testing.assert_allclose(
        _probabilities(evaluated),
        [[p.probabilities[label] for label in LABELS] for p in direct],
        atol=TOLERANCE,
    )
