"""The page's speaker field in headless Chromium: shown only for a model that adapts to
speakers, sent as the `speaker` session, and the answer says how many clips the
adaptation came from (the same probabilities as the API with a session of its own)."""

from __future__ import annotations

import httpx
import pytest
import test_serve_page as page
from support.serve_support import live_server
from support.speaker_bundles import adapting, fit_norm
from support.toy_bundle import toy_table, train_toy_bundle

from emofuse.bundle import Bundle
from emofuse.serve import create_app

browser = page.browser  # headless Chromium (tests/test_serve_page.py)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("page-speaker")
    bundle_dir = train_toy_bundle(root)
    table = toy_table(root / "table")
    return bundle_dir, table


def _submit(driver, clip: str, text: str, speaker: str) -> str:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "audio-file").send_keys(clip)
    words = driver.find_element(By.ID, "transcript")
    words.clear()
    words.send_keys(text)
    field = driver.find_element(By.ID, "speaker-session")
    field.clear()
    field.send_keys(speaker)
    driver.find_element(By.ID, "submit-btn").click()
    page._wait(driver, lambda d: d.find_element(By.ID, "speaker-note").is_displayed(), "note")
    return driver.find_element(By.ID, "speaker-note").text


def test_the_page_sends_a_speaker_session_to_a_model_that_adapts(browser, work):
    from selenium.webdriver.common.by import By

    bundle_dir, table = work
    clips = [str(p) for p in table["audio"][:2]]
    texts = list(table["text"][:2])
    adapted = adapting(Bundle.load(bundle_dir), fit_norm(Bundle.load(bundle_dir), table))
    with live_server(create_app(adapted, warm=False)) as url:
        page._open(browser, url)
        assert browser.find_element(By.ID, "speaker-box").is_displayed()
        assert "from 1 clip " in _submit(browser, clips[0], texts[0], "caller-7")
        shown = _submit(browser, clips[1], texts[1], "caller-7")
        assert "from 2 clips" in shown and "weak" in shown
        bars = {
            g.get_attribute("data-label"): float(g.get_attribute("data-probability"))
            for g in browser.find_elements(By.CSS_SELECTOR, "#chart g[data-label]")
        }
        # the API, with a session of its own fed the same two clips, gives the same answer
        for clip, text in zip(clips, texts, strict=True):
            with open(clip, "rb") as handle:
                api = httpx.post(f"{url}/predict", files={"audio": ("c.wav", handle.read())},
                                 data={"speaker": "api-twin", "text": text}, timeout=60).json()  # fmt: skip
        assert api["speaker_clips"] == 2
        for label, p in api["probabilities"].items():
            assert bars[label] == pytest.approx(p, abs=1e-6)

    with live_server(create_app(Bundle.load(bundle_dir), warm=False)) as url:
        page._open(browser, url)
        assert not browser.find_element(By.ID, "speaker-box").is_displayed()
