"""The page's two richer views in headless Chromium (Selenium), on a server with tokens:

- a recording longer than one clip goes to ``POST /timeline`` and is drawn as a band per
  segment (the same count, labels and times as the API returns), with a legend, the
  segment's words on hover and the summary; no speech and errors are shown as such;
- a ``both`` model's answer shows the fused, voice-only and words-only distributions
  side by side, and flags when the voice and the words disagree.

Set EMOFUSE_PAGE_SCREENSHOTS=DIR to keep the screenshots of both views in DIR.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import test_serve_page as page
import test_timeline_run as spoken
from support.browser import csp_violations, type_token
from support.serve_support import live_server, toy_clip

from emofuse.serve import ServeLimits, create_app

TOKEN = "views-test-token-" + "v" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The server's clip limit: the page sends anything longer to /timeline by itself.
CLIP_LIMIT_S = 8.0

# Spoken clips (espeak-ng), loud or soft, joined by pauses, and a toy-encoder speech bundle
# that tells loud from soft speech (tests/test_timeline_run.py).
voices, recording, speech_bundle = spoken.voices, spoken.recording, spoken.speech_bundle
browser = page.browser  # headless Chromium (tests/test_serve_page.py)
_wait = page._wait


def _shot(element_or_driver, tmp_path: Path, name: str) -> Path:
    directory = Path(os.environ.get("EMOFUSE_PAGE_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if hasattr(element_or_driver, "save_screenshot"):
        element_or_driver.save_screenshot(str(path))
    else:  # the whole element: scrolled to the top of the window first
        element_or_driver.parent.execute_script("arguments[0].scrollIntoView()", element_or_driver)
        element_or_driver.screenshot(str(path))
    assert path.stat().st_size > 5_000
    return path


def _secured(bundle):
    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.tokens import Tokens

    settings = SecuritySettings(tokens=Tokens([TOKEN]), rate_per_minute=0)
    limits = ServeLimits(max_audio_s=CLIP_LIMIT_S)
    return live_server(create_app(bundle, limits=limits, security=settings))


def _open_with_token(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_element(By.ID, "token-form").is_displayed(), "token form")
    type_token(driver, TOKEN)
    _wait(driver, lambda d: "labels:" in d.find_element(By.ID, "model-info").text, "model info")


# ---------------------------------------------------------------- the timeline


@pytest.fixture(scope="module")
def speech_server(speech_bundle):
    with _secured(speech_bundle) as url:
        yield url


@pytest.fixture(scope="module")
def session(recording, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The spoken recording (longer than the server's clip limit) and a CSV transcript
    with each clip's sentence at its times."""
    path, truth = recording
    words = tmp_path_factory.mktemp("session") / "words.csv"
    with open(words, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["start_s", "end_s", "text"])
        for row in truth.itertuples():
            writer.writerow([f"{row.start_s:.3f}", f"{row.end_s:.3f}", row.text])
    assert sf.info(path).duration > CLIP_LIMIT_S
    return path, words, list(truth.text)


def _bands(driver) -> list[dict]:
    from selenium.webdriver.common.by import By

    return [
        {
            "label": g.get_attribute("data-label"),
            "start_s": float(g.get_attribute("data-start")),
            "end_s": float(g.get_attribute("data-end")),
            "confidence": float(g.get_attribute("data-confidence")),
            "title": g.find_element(By.TAG_NAME, "title").get_attribute("textContent"),
            "width": float(
                g.find_element(By.CSS_SELECTOR, "rect.band-extent").get_attribute("width")
            ),
            "fill": g.find_element(By.CSS_SELECTOR, "rect.band-extent").get_attribute("fill"),
        }
        for g in driver.find_elements(By.CSS_SELECTOR, "#timeline-chart g.band")
    ]


def _submit_timeline(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "submit-btn").click()
    _wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "timeline").is_displayed()
            or d.find_element(By.ID, "error").is_displayed()
        ),
        "the timeline",
    )


def test_a_long_recording_is_drawn_as_the_apis_timeline(browser, speech_server, session, tmp_path):
    from selenium.webdriver.common.by import By

    path, words, sentences = session
    _open_with_token(browser, speech_server)
    browser.find_element(By.ID, "audio-file").send_keys(str(path))
    browser.find_element(By.ID, "timed-transcript").send_keys(str(words))
    _submit_timeline(browser)  # "automatic": longer than the clip limit -> /timeline
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert not browser.find_element(By.ID, "result").is_displayed()
    bands = _bands(browser)

    with open(path, "rb") as audio, open(words, "rb") as transcript:
        api = httpx.post(
            f"{speech_server}/timeline",
            headers=AUTH,
            files={
                "audio": (path.name, audio, "audio/wav"),
                "transcript": (words.name, transcript),
            },
            timeout=120,
        ).json()
    segments = api["segments"]
    assert len(segments) >= len(sentences) - 1  # one segment (or so) per spoken clip
    assert len(bands) == len(segments)
    assert [b["label"] for b in bands] == [s["label"] for s in segments]
    assert len({s["label"] for s in segments}) >= 2  # more than one colour to tell apart
    for band, segment in zip(bands, segments, strict=True):
        assert band["start_s"] == pytest.approx(segment["start_s"], abs=1e-6)
        assert band["end_s"] == pytest.approx(segment["end_s"], abs=1e-6)
        assert band["confidence"] == pytest.approx(segment["confidence"], abs=1e-6)
        if segment["text"]:  # the words of the segment are in its hover title
            assert segment["text"] in band["title"]
    assert any(s in b["title"] for b in bands for s in sentences)
    # Drawn to scale, one colour per label.
    longest = max(range(len(segments)), key=lambda i: segments[i]["end_s"] - segments[i]["start_s"])
    assert max(range(len(bands)), key=lambda i: bands[i]["width"]) == longest
    fills = {}
    for band in bands:
        fills.setdefault(band["label"], set()).add(band["fill"])
    assert all(len(f) == 1 for f in fills.values())
    assert len({next(iter(f)) for f in fills.values()}) == len(fills)
    # The colours are the server's palette (GET /labels), the one the PNGs are drawn with.
    from emofuse.palette import label_colours

    served = httpx.get(f"{speech_server}/labels", headers=AUTH, timeout=10).json()["colours"]
    assert served == label_colours(api["summary"]["labels"])
    assert {label: next(iter(f)) for label, f in fills.items()} == {x: served[x] for x in fills}
    legend = [
        e.get_attribute("data-label")
        for e in browser.find_elements(By.CSS_SELECTOR, "#timeline-legend .legend-item")
    ]
    assert legend == api["summary"]["labels"]

    summary = api["summary"]
    shares = browser.find_element(By.ID, "timeline-shares").text
    for label, share in summary["time_share"].items():
        assert f"{share['share'] * 100:.1f}%" in shares and label in shares
    facts = browser.find_element(By.ID, "timeline-facts").text
    assert f"{summary['segments']} segments" in facts
    assert f"{summary['transitions']['count']} change" in facts
    assert f"Mostly {summary['dominant']}" in facts
    assert not browser.find_element(By.ID, "timeline-message").is_displayed()
    assert csp_violations(browser) == []
    _shot(browser.find_element(By.ID, "timeline"), tmp_path, "page-timeline.png")


def test_silence_shows_no_speech_and_bad_audio_shows_the_apis_detail(
    browser, speech_server, tmp_path
):
    from selenium.webdriver.common.by import By

    quiet = tmp_path / "quiet.wav"
    noise = 1e-4 * np.random.default_rng(0).standard_normal(16_000 * 12)
    sf.write(quiet, noise.astype(np.float32), 16_000)
    _open_with_token(browser, speech_server)
    browser.find_element(By.ID, "audio-file").send_keys(str(quiet))
    _submit_timeline(browser)
    message = browser.find_element(By.ID, "timeline-message")
    assert message.is_displayed() and "no speech found in quiet.wav" in message.text
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline-chart g.band") == []

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not audio" * 10)
    browser.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="timeline"]').click()
    browser.find_element(By.ID, "audio-file").send_keys(str(broken))
    _submit_timeline(browser)
    api = httpx.post(
        f"{speech_server}/timeline",
        headers=AUTH,
        files={"audio": ("broken.wav", broken.read_bytes(), "audio/wav")},
        timeout=60,
    )
    assert api.status_code in (415, 422)
    error = browser.find_element(By.ID, "error")
    _wait(browser, lambda d: "broken.wav" in error.text, "the error")
    assert api.json()["detail"] in error.text and f"HTTP {api.status_code}" in error.text
    assert not browser.find_element(By.ID, "timeline").is_displayed()


# ---------------------------------------------------------------- which modality spoke


@pytest.fixture(scope="module")
def both_server(tmp_path_factory):
    from support.toy_bundle import train_toy_bundle

    from emofuse.bundle import Bundle

    bundle = Bundle.load(train_toy_bundle(tmp_path_factory.mktemp("toy-views-bundle")))
    assert set(bundle.modality_heads) == {"speech", "text"}
    with _secured(bundle) as url:
        yield url, bundle


def _distributions(driver) -> dict[str, dict[str, float]]:
    from selenium.webdriver.common.by import By

    out = {}
    for name, chart in (("fused", "chart"), ("speech", "chart-speech"), ("text", "chart-text")):
        svg = driver.find_element(By.ID, chart)
        if not svg.is_displayed():
            continue
        out[name] = {
            g.get_attribute("data-label"): float(g.get_attribute("data-probability"))
            for g in svg.find_elements(By.CSS_SELECTOR, "g[data-label]")
        }
    return out


def _cases(url: str, tmp_path: Path) -> list[tuple[Path, str, dict]]:
    """Every tone x sentence of the toy bundle, with the API's answer."""
    from support.toy_bundle import SENTENCES, tone_wav

    cases = []
    for hz in (150.0, 240.0, 330.0):
        clip = tone_wav(tmp_path / f"tone{int(hz)}.wav", 0.6, hz)
        for sentences in SENTENCES.values():
            answer = httpx.post(
                f"{url}/predict",
                headers=AUTH,
                files={"audio": (clip.name, clip.read_bytes(), "audio/wav")},
                data={"text": sentences[0]},
                timeout=60,
            ).json()
            cases.append((clip, sentences[0], answer))
    return cases


def test_both_model_shows_three_distributions_and_flags_disagreement(
    browser, both_server, tmp_path
):
    from selenium.webdriver.common.by import By

    url, bundle = both_server
    cases = _cases(url, tmp_path)
    assert all(c[2]["by_modality"] and c[2]["agree"] is not None for c in cases)
    agreeing = next((c for c in cases if c[2]["agree"]), None)
    disagreeing = next((c for c in cases if not c[2]["agree"]), None)
    assert agreeing and disagreeing, "the toy model should both agree and disagree somewhere"

    _open_with_token(browser, url)
    for clip, text, api in (disagreeing, agreeing):
        browser.find_element(By.ID, "audio-file").send_keys(str(clip))
        field = browser.find_element(By.ID, "transcript")
        field.clear()
        field.send_keys(text)
        browser.find_element(By.ID, "submit-btn").click()
        expected_flag = str(api["agree"]).lower()
        _wait(
            browser,
            lambda d, t=text, f=expected_flag: (
                t in d.find_element(By.ID, "used-text").text
                and d.find_element(By.ID, "agreement").get_attribute("data-agree") == f
            ),
            "this clip's answer and its flag",
        )
        shown = _distributions(browser)
        assert set(shown) == {"fused", "speech", "text"}
        expected = {"fused": api["probabilities"], **api["by_modality"]}
        for name, probabilities in expected.items():
            assert set(shown[name]) == set(bundle.labels)
            for label, p in probabilities.items():
                assert shown[name][label] == pytest.approx(p, abs=1e-6)
        voice = max(api["by_modality"]["speech"], key=api["by_modality"]["speech"].get)
        words = max(api["by_modality"]["text"], key=api["by_modality"]["text"].get)
        assert browser.find_element(By.ID, "chart-speech").get_attribute("data-top") == voice
        assert browser.find_element(By.ID, "chart-text").get_attribute("data-top") == words
        flag = browser.find_element(By.ID, "agreement")
        assert flag.get_attribute("data-agree") == str(api["agree"]).lower()
        if api["agree"]:
            assert "disagree" not in flag.get_attribute("class") and voice in flag.text
        else:
            assert "disagree" in flag.get_attribute("class")
            assert f"the voice says {voice}, the words say {words}" in flag.text
            _shot(browser.find_element(By.ID, "result"), tmp_path, "page-modalities.png")
    assert csp_violations(browser) == []


def test_a_speech_model_shows_one_distribution_and_no_flag(
    browser, speech_server, speech_bundle, tmp_path
):
    from selenium.webdriver.common.by import By

    clip = tmp_path / "clip.wav"
    sf.write(clip, toy_clip("happy", 1.0), 16_000)
    _open_with_token(browser, speech_server)
    browser.find_element(By.ID, "audio-file").send_keys(str(clip))
    browser.find_element(By.ID, "submit-btn").click()  # short: "automatic" -> /predict
    _wait(browser, lambda d: d.find_element(By.ID, "result").is_displayed(), "the result")
    assert set(_distributions(browser)) == {"fused"}
    assert set(_distributions(browser)["fused"]) == set(speech_bundle.labels)
    assert not browser.find_element(By.ID, "agreement").is_displayed()
    assert not browser.find_element(By.ID, "timeline").is_displayed()


# ---------------------------------------------------------------- the /timeline upload limit


def test_a_path_gets_its_own_body_limit_from_content_length_and_while_streaming():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from emofuse.serve.body_limit import BodyLimitMiddleware, set_path_body_limit

    async def echo(request):
        return JSONResponse({"bytes": len(await request.body())})

    app = Starlette(routes=[Route(p, echo, methods=["POST"]) for p in ("/small", "/big")])
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=100)
    set_path_body_limit(app, "/big", 1000)
    with TestClient(app) as http:
        assert http.post("/big", content=b"x" * 500).json() == {"bytes": 500}
        refused = http.post("/small", content=b"x" * 500)
        assert refused.status_code == 413 and "100 bytes" in refused.json()["detail"]
        assert http.post("/big", content=b"x" * 1001).status_code == 413
        streamed = http.post("/big", content=iter([b"x" * 600, b"x" * 600]))  # no length
        assert streamed.status_code == 413 and "1000 bytes" in streamed.text
        assert http.post("/small", content=iter([b"x" * 60])).json() == {"bytes": 60}
    with pytest.raises(ValueError, match="/big"):
        BodyLimitMiddleware(app, 100, {"/big": 0})
    with pytest.raises(ValueError, match="no BodyLimitMiddleware"):
        set_path_body_limit(FastAPI(), "/big", 10)


def test_serve_flag_sets_the_timeline_upload_limit(tmp_path_factory, monkeypatch):
    from fastapi.testclient import TestClient
    from support.serve_support import toy_bundle

    import emofuse.serve.server
    from emofuse.cli import main

    served = {}
    monkeypatch.setattr(emofuse.serve.server, "serve", lambda app, _: served.update(app=app))
    bundle = toy_bundle(tmp_path_factory, "speech")
    flags = ["--max-body-mb", "1", "--timeline-max-mb", "3"]
    assert main(["serve", str(bundle), *flags]) == 0
    mb = 1024 * 1024
    with TestClient(served["app"], base_url="http://localhost") as http:
        for path, size, status in (
            ("/predict", 2, 413),
            ("/timeline", 2, None),
            ("/timeline", 4, 413),
        ):
            files = {"audio": ("big.wav", b"\0" * (size * mb), "audio/wav")}
            got = http.post(path, files=files).status_code
            assert got == status if status else got not in (413, 200), (path, size, got)
    assert main(["serve", str(bundle), "--timeline-max-mb", "0"]) != 0
