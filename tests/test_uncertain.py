"""The confidence threshold: a prediction whose top probability (the fused one for a
``both`` bundle) is below ``min_confidence`` is marked ``uncertain``, its label kept; the
mark is the same through `Bundle.predict`, `emofuse predict` (one clip and a manifest),
`/predict` and `/predict/batch`, and a threshold outside [0, 1] is refused clearly.

The bundle is a toy-encoder fused bundle (tests/serve_support.py), built in milliseconds;
the clips pair a pitch with a sentence, sometimes of another emotion, so the top
probabilities spread."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import test_serve_page
from fastapi.testclient import TestClient
from support.browser import csp_violations
from support.serve_support import TOY_PITCH_HZ, TOY_SENTENCES, live_server, toy_bundle, toy_clip
from support.thresholds import threshold_in_widest_gap
from test_serve_page import _open, _submit_and_read_chart

from emofuse.cli import main
from emofuse.serve import ServeLimits, create_app

LIMITS = ServeLimits(max_batch_files=16)
#: (pitch label, sentence label): matching pairs give confident answers, mixed ones less so.
PAIRS = [(a, b) for a in TOY_PITCH_HZ for b in TOY_PITCH_HZ][::2]
INVALID = [-0.1, 1.5, math.nan, math.inf, -math.inf]
#: The headless Chromium of the page tests (skips with a message where it is missing).
browser = test_serve_page.browser


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return toy_bundle(tmp_path_factory, "both")


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    from emofuse.bundle import Bundle

    return Bundle.load(bundle_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    """A manifest (audio relative to it, text) of clips that are not training clips."""
    root = tmp_path_factory.mktemp("uncertain-clips")
    rows = []
    for k, (pitch, words) in enumerate(PAIRS):
        sf.write(root / f"u{k}.wav", toy_clip(pitch, 0.5, seed=200 + k), 16_000)
        rows.append({"id": f"u{k}", "audio": f"u{k}.wav", "text": TOY_SENTENCES[words]})
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "clips.csv", index=False)
    frame["path"] = [str(root / a) for a in frame["audio"]]
    frame.attrs["manifest"] = root / "clips.csv"
    return frame


@pytest.fixture(scope="module")
def tops(bundle, clips) -> np.ndarray:
    """The top (fused) probability of each clip, no threshold."""
    plain = bundle.predict(list(clips["path"]), list(clips["text"]))
    assert not any(p.uncertain for p in plain)  # no threshold: nothing is marked
    return np.array([max(p.probabilities.values()) for p in plain])


# ---------------------------------------------------------------- the rule


def test_a_threshold_above_every_top_marks_all_and_zero_none(bundle, clips, tops):
    plain = bundle.predict(list(clips["path"]), list(clips["text"]))
    assert tops.max() < 1.0
    above = float(np.nextafter(tops.max(), 2.0))
    marked = bundle.predict(list(clips["path"]), list(clips["text"]), min_confidence=above)
    assert all(p.uncertain for p in marked)
    # Nothing is hidden: the label and probabilities are those without a threshold.
    assert [p.label for p in marked] == [p.label for p in plain]
    assert [p.probabilities for p in marked] == [p.probabilities for p in plain]
    for off in (0, 0.0, None):
        got = bundle.predict(list(clips["path"]), list(clips["text"]), min_confidence=off)
        assert not any(p.uncertain for p in got)


def test_a_threshold_between_two_tops_splits_them_exactly(bundle, clips, tops):
    threshold = threshold_in_widest_gap(tops)
    got = bundle.predict(list(clips["path"]), list(clips["text"]), min_confidence=threshold)
    expected = [bool(t < threshold) for t in tops]
    assert [p.uncertain for p in got] == expected
    assert any(expected) and not all(expected)
    # A top probability equal to the threshold is not uncertain (the rule is "below").
    k = int(np.argmin(tops))
    at = bundle.predict([clips["path"][k]], [clips["text"][k]], min_confidence=float(tops[k]))
    assert at[0].uncertain is False


def test_the_rule_on_known_probabilities():
    from emofuse.head.confidence import is_uncertain
    from emofuse.predict.rows import predictions_frame

    assert is_uncertain({"a": 0.6, "b": 0.4}, 0.61)
    assert not is_uncertain({"a": 0.6, "b": 0.4}, 0.6)
    assert not is_uncertain({"a": 0.6, "b": 0.4}, 0.0)
    assert not is_uncertain({"a": 0.6, "b": 0.4}, None)
    probabilities = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]], dtype=np.float32)
    table = pd.DataFrame({"id": ["x", "y", "z"], "label": ["a", "b", "b"]})
    frame = predictions_frame(table, probabilities, ["a", "b"], min_confidence=0.6)
    assert list(frame["uncertain"]) == [False, True, False]
    assert list(frame["predicted"]) == ["a", "a", "b"]  # the label is kept
    assert "uncertain" not in predictions_frame(table, probabilities, ["a", "b"])


# ---------------------------------------------------------------- every path agrees


def _predict_cli(bundle_dir, *argv) -> int:
    return main(
        ["predict", str(bundle_dir), *argv, "--plugin", "support.toy_encoders", "--no-progress"]
    )


def test_the_flag_is_the_same_through_every_path(bundle_dir, bundle, clips, tops, tmp_path, capsys):
    threshold = threshold_in_widest_gap(tops)
    expected = [bool(t < threshold) for t in tops]
    paths, texts = list(clips["path"]), list(clips["text"])

    # Bundle.predict
    direct = bundle.predict(paths, texts, min_confidence=threshold)
    assert [p.uncertain for p in direct] == expected

    # emofuse predict, one clip at a time: the printed mark
    printed = []
    for path, text in zip(paths, texts, strict=True):
        argv = [path, "--text", text, "--min-confidence", repr(threshold)]
        assert _predict_cli(bundle_dir, *argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("label: ")
        assert out[1].startswith("uncertain: ")
        printed.append(out[1].startswith("uncertain: yes"))
    assert printed == expected

    # emofuse predict --manifest: an `uncertain` column right after `predicted`
    out_csv = tmp_path / "predictions.csv"
    manifest = clips.attrs["manifest"]
    argv = ["--manifest", str(manifest), "-o", str(out_csv), "--min-confidence", repr(threshold)]
    assert _predict_cli(bundle_dir, *argv) == 0
    written = pd.read_csv(out_csv, keep_default_na=False)
    columns = list(written.columns)
    assert columns[columns.index("predicted") + 1] == "uncertain"
    assert list(written["uncertain"]) == expected
    assert list(written["predicted"]) == [p.label for p in direct]

    # /predict (the request's threshold, then the server's), /predict/batch
    def files(k):
        return {"audio": (f"u{k}.wav", Path(paths[k]).read_bytes(), "audio/wav")}

    with TestClient(create_app(bundle, limits=LIMITS, warm=False)) as client:
        one = [
            client.post("/predict", files=files(k), data={"text": texts[k],
                        "min_confidence": repr(threshold)}).json()
            for k in range(len(paths))
        ]  # fmt: skip
        batch = client.post(
            "/predict/batch",
            files=[("audio", files(k)["audio"]) for k in range(len(paths))],
            data={"texts": texts, "min_confidence": repr(threshold)},
        )
        plain = client.post("/predict", files=files(0), data={"text": texts[0]}).json()
    assert [r["uncertain"] for r in one] == expected
    assert {r["min_confidence"] for r in one} == {threshold}
    assert batch.status_code == 200, batch.text
    assert [i["result"]["uncertain"] for i in batch.json()] == expected
    assert plain["uncertain"] is False and plain["min_confidence"] is None

    app = create_app(bundle, limits=LIMITS, warm=False, min_confidence=threshold)
    with TestClient(app) as client:
        served = [
            client.post("/predict", files=files(k), data={"text": texts[k]}).json()
            for k in range(len(paths))
        ]
        off = client.post(
            "/predict", files=files(0), data={"text": texts[0], "min_confidence": "0"}
        ).json()
    assert [r["uncertain"] for r in served] == expected
    assert served[0]["min_confidence"] == threshold
    assert off["uncertain"] is False and off["min_confidence"] == 0.0  # a request may turn it off


def test_a_failed_manifest_row_has_no_mark_and_no_flag_means_no_column(bundle_dir, clips, tmp_path):
    manifest = tmp_path / "clips.csv"
    rows = clips[["audio", "text"]].head(2).copy()
    rows["audio"] = [str(Path(clips["path"][k])) for k in range(2)]
    rows.loc[len(rows)] = {"audio": str(tmp_path / "missing.wav"), "text": TOY_SENTENCES["sad"]}
    rows.to_csv(manifest, index=False)
    out_csv = tmp_path / "p.csv"
    assert _predict_cli(bundle_dir, "--manifest", str(manifest), "-o", str(out_csv),
                        "--min-confidence", "1") == 1  # fmt: skip
    written = pd.read_csv(out_csv, keep_default_na=False)
    assert list(written["uncertain"].astype(str)) == ["True", "True", ""]
    assert _predict_cli(bundle_dir, "--manifest", str(manifest), "-o", str(out_csv)) == 1
    assert "uncertain" not in pd.read_csv(out_csv).columns


def test_a_service_predictor_without_a_threshold_of_its_own_is_marked():
    """Any predictor (not only a bundle) gets the mark: the service applies the rule."""
    from emofuse.bundle import Prediction
    from emofuse.serve.handlers import PredictionService

    class Fixed:
        labels, modality, needs_text, needs_audio = ["a", "b"], "text", True, False

        def predict(self, audio, texts=None, *, asr=None):
            return [Prediction(label="a", probabilities={"a": 0.6, "b": 0.4}) for _ in texts]

    service = PredictionService(Fixed(), LIMITS, min_confidence=0.61)
    (result,) = service.predict_items([service.item(0, None, None, "words")])
    assert result.uncertain is True and result.label == "a" and result.min_confidence == 0.61
    (result,) = service.predict_items([service.item(0, None, None, "words")], 0.6)
    assert result.uncertain is False and result.min_confidence == 0.6


# ---------------------------------------------------------------- bad thresholds


@pytest.mark.parametrize("value", [*INVALID, True, "half"])
def test_invalid_thresholds_are_refused_in_python(bundle, clips, value):
    from emofuse.head.confidence import check_min_confidence

    with pytest.raises(ValueError, match="min_confidence must be a probability between 0 and 1"):
        check_min_confidence(value)
    with pytest.raises(ValueError, match="min_confidence"):
        bundle.predict([clips["path"][0]], [clips["text"][0]], min_confidence=value)
    with pytest.raises(ValueError, match="min_confidence"):
        create_app(bundle, limits=LIMITS, warm=False, min_confidence=value)


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "inf"])
def test_invalid_thresholds_are_refused_by_the_cli(bundle_dir, clips, tmp_path, capsys, value):
    flag = f"--min-confidence={value}"
    assert _predict_cli(bundle_dir, clips["path"][0], "--text", clips["text"][0], flag) == 2
    err = capsys.readouterr().err
    assert "--min-confidence must be a probability between 0 and 1" in err and value in err
    manifest = str(clips.attrs["manifest"])
    out_csv = tmp_path / "p.csv"
    assert _predict_cli(bundle_dir, "--manifest", manifest, "-o", str(out_csv), flag) == 2
    assert "--min-confidence must be" in capsys.readouterr().err
    assert not out_csv.exists()
    # serve refuses it before loading the bundle (this folder is no bundle)
    assert main(["serve", str(tmp_path), flag]) == 2
    assert "--min-confidence must be" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "inf", "half", ""])
def test_invalid_thresholds_are_422_in_the_api(bundle, clips, value):
    clip = Path(clips["path"][0]).read_bytes()
    with TestClient(create_app(bundle, limits=LIMITS, warm=False)) as client:
        one = client.post(
            "/predict",
            files={"audio": ("c.wav", clip, "audio/wav")},
            data={"text": clips["text"][0], "min_confidence": value},
        )
        batch = client.post(
            "/predict/batch",
            files=[("audio", ("c.wav", clip, "audio/wav"))],
            data={"texts": [clips["text"][0]], "min_confidence": value},
        )
    if value == "":  # an empty form field is "not sent": the server's default
        assert one.status_code == 200 and batch.status_code == 200
        return
    for response in (one, batch):
        assert response.status_code == 422, response.text
        assert "min_confidence" in response.json()["detail"]


def test_the_threshold_sent_twice_is_422(bundle, clips):
    clip = Path(clips["path"][0]).read_bytes()
    with TestClient(create_app(bundle, limits=LIMITS, warm=False)) as client:
        response = client.post(
            "/predict",
            files=[("audio", ("c.wav", clip, "audio/wav"))],
            data={"text": clips["text"][0], "min_confidence": ["0.2", "0.9"]},
        )
    assert response.status_code == 422
    assert "'min_confidence' sent 2 times" in response.json()["detail"]


def test_the_openapi_schema_documents_the_field(bundle):
    with TestClient(create_app(bundle, limits=LIMITS, warm=False)) as client:
        schema = client.get("/openapi.json").json()
    out = schema["components"]["schemas"]["PredictionOut"]["properties"]
    assert out["uncertain"]["type"] == "boolean" and "min_confidence" in out
    for route in ("/predict", "/predict/batch"):
        body = schema["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]
        ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
        field = schema["components"]["schemas"][ref]["properties"]["min_confidence"]
        bounds = [s for s in field["anyOf"] if s.get("type") == "number"][0]
        assert bounds["minimum"] == 0.0 and bounds["maximum"] == 1.0


# ---------------------------------------------------------------- the page


def test_the_page_marks_an_uncertain_answer(browser, bundle, clips):
    """Headless Chromium: the mark shows when the server says uncertain, not otherwise."""
    from selenium.webdriver.common.by import By

    for threshold, shown in ((1.0, True), (0.0, False)):
        app = create_app(bundle, limits=LIMITS, warm=False, min_confidence=threshold)
        with live_server(app) as url:
            _open(browser, url)
            browser.find_element(By.ID, "audio-file").send_keys(clips["path"][0])
            browser.find_element(By.ID, "transcript").send_keys(clips["text"][0])
            _submit_and_read_chart(browser)
            mark = browser.find_element(By.ID, "uncertain-mark")
            assert mark.is_displayed() is shown
            assert browser.find_element(By.ID, "top-label").text  # the label stays
    assert csp_violations(browser) == []
