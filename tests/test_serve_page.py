"""The web page in headless Chromium (Selenium): upload a clip or record one from a fake
microphone, submit, and see a bar per label with the API's top label highlighted; on a
server with tokens, enter the token once (kept in memory only) and get a prediction."""

from __future__ import annotations

import httpx
import pytest
from support.browser import csp_violations, headless_chromium, type_token
from support.serve_support import heldout_clip, live_server, load_bundle

from emofuse.serve import ServeLimits, create_app

TRANSCRIPT = "Das will sie am Mittwoch abgeben."
WAIT_S = 30


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # a fake microphone (a beeping tone) that needs no permission prompt
    driver = headless_chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"),
    )
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def bundle(emodb_dir, tmp_path_factory):
    return load_bundle(emodb_dir, tmp_path_factory, "both")


@pytest.fixture(scope="module")
def server(bundle):
    with live_server(create_app(bundle, limits=ServeLimits(max_audio_s=20))) as url:
        yield url


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited for {what}")


def _open(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: "labels:" in d.find_element(By.ID, "model-info").text, "model info")


def _submit_and_read_chart(driver) -> dict:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "submit-btn").click()
    _wait(driver, lambda d: d.find_element(By.ID, "result").is_displayed(), "the result")
    groups = driver.find_elements(By.CSS_SELECTOR, "#chart g[data-label]")
    return {
        "top": driver.find_element(By.ID, "top-label").text,
        "bars": {
            g.get_attribute("data-label"): float(g.get_attribute("data-probability"))
            for g in groups
        },
        "highlighted": [
            g.get_attribute("data-label")
            for g in groups
            if "top" in (g.find_element(By.TAG_NAME, "rect").get_attribute("class") or "")
        ],
        "widths": {
            g.get_attribute("data-label"): float(
                g.find_element(By.TAG_NAME, "rect").get_attribute("width")
            )
            for g in groups
        },
    }


def test_upload_shows_a_bar_per_label_and_the_apis_top_label(
    browser, server, bundle, emodb_dir, tmp_path
):
    from selenium.webdriver.common.by import By

    clip = heldout_clip(emodb_dir)
    _open(browser, server)
    browser.find_element(By.ID, "audio-file").send_keys(str(clip))
    browser.find_element(By.ID, "transcript").send_keys(TRANSCRIPT)
    shown = _submit_and_read_chart(browser)

    api = httpx.post(
        f"{server}/predict",
        files={"audio": (clip.name, clip.read_bytes(), "audio/wav")},
        data={"text": TRANSCRIPT},
        timeout=60,
    ).json()
    assert set(shown["bars"]) == set(bundle.labels)
    assert shown["top"] == api["label"]
    assert shown["highlighted"] == [api["label"]]
    for label, p in api["probabilities"].items():
        assert shown["bars"][label] == pytest.approx(p, abs=1e-6)
    widest = max(shown["widths"], key=shown["widths"].get)
    assert widest == api["label"]  # bars are drawn to scale
    assert TRANSCRIPT in browser.find_element(By.ID, "used-text").text

    screenshot = tmp_path / "page-upload.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


def test_errors_are_shown_to_the_user(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.ID, "submit-btn").click()  # nothing chosen: caught in the page
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "Choose an audio file" in error.text

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not audio")
    browser.find_element(By.ID, "audio-file").send_keys(str(broken))
    browser.find_element(By.ID, "transcript").send_keys(TRANSCRIPT)
    browser.find_element(By.ID, "submit-btn").click()  # the server's 4xx, shown as is
    _wait(browser, lambda d: "unreadable audio" in d.find_element(By.ID, "error").text, "error")
    api = httpx.post(
        f"{server}/predict",
        files={"audio": ("broken.wav", broken.read_bytes(), "audio/wav")},
        data={"text": TRANSCRIPT},
        timeout=60,
    )
    assert api.status_code in (415, 422)  # the status is the API's, whichever it gives
    assert "broken.wav" in error.text and f"HTTP {api.status_code}" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_recording_from_the_microphone_sends_a_wav(browser, server, bundle, tmp_path):
    """Chromium's fake microphone plays a tone; the page records it as WAV and submits."""
    import time

    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.ID, "record-btn").click()
    _wait(browser, lambda d: "recording" in d.find_element(By.ID, "record-status").text, "rec")
    time.sleep(1.5)
    browser.find_element(By.ID, "record-btn").click()
    _wait(browser, lambda d: "recorded" in d.find_element(By.ID, "record-status").text, "stop")
    seconds = float(browser.find_element(By.ID, "record-status").text.split()[1])
    assert 1.0 <= seconds <= 10.0
    assert "your recording" in browser.find_element(By.ID, "audio-choice").text
    browser.find_element(By.ID, "transcript").send_keys(TRANSCRIPT)
    shown = _submit_and_read_chart(browser)
    assert browser.find_element(By.ID, "error").is_displayed() is False
    assert set(shown["bars"]) == set(bundle.labels)
    assert shown["highlighted"] == [shown["top"]]
    assert shown["top"] == max(shown["bars"], key=shown["bars"].get)
    browser.save_screenshot(str(tmp_path / "page-recording.png"))


# ---------------------------------------------------------------- a server with tokens

TOKEN = "page-test-token-" + "k" * 20


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory):
    from support.toy_bundle import train_toy_bundle

    from emofuse.bundle import Bundle
    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.tokens import Tokens

    toy = Bundle.load(train_toy_bundle(tmp_path_factory.mktemp("toy-page-bundle")))
    settings = SecuritySettings(tokens=Tokens([TOKEN, "other-token-" + "q" * 20]))
    with live_server(create_app(toy, limits=ServeLimits(max_audio_s=20), security=settings)) as url:
        yield url, toy


def test_page_asks_for_the_token_once_and_predicts(browser, secured_server, tmp_path):
    from selenium.webdriver.common.by import By
    from support.toy_bundle import tone_wav

    url, toy = secured_server
    browser.get(url)
    _wait(browser, lambda d: d.find_element(By.ID, "token-form").is_displayed(), "token form")
    assert "needs an API token" in browser.find_element(By.ID, "model-info").text

    type_token(browser, "wrong-token-" + "w" * 20)
    _wait(browser, lambda d: "not accepted" in d.find_element(By.ID, "error").text, "refusal")
    assert browser.find_element(By.ID, "token-form").is_displayed()

    type_token(browser, TOKEN)
    _wait(browser, lambda d: "labels:" in d.find_element(By.ID, "model-info").text, "model info")
    assert not browser.find_element(By.ID, "token-form").is_displayed()
    assert browser.find_element(By.ID, "token-input").get_attribute("value") == ""

    clip = tone_wav(tmp_path / "clip.wav", 0.6, 300.0)
    browser.find_element(By.ID, "audio-file").send_keys(str(clip))
    browser.find_element(By.ID, "transcript").send_keys("what a lovely day")
    shown = _submit_and_read_chart(browser)
    api = httpx.post(
        f"{url}/predict",
        headers={"Authorization": f"Bearer {TOKEN}"},
        files={"audio": (clip.name, clip.read_bytes(), "audio/wav")},
        data={"text": "what a lovely day"},
        timeout=60,
    ).json()
    assert shown["top"] == api["label"] and set(shown["bars"]) == set(toy.labels)

    # Kept in memory only: nothing in storage or cookies, and a reload forgets it.
    stored = browser.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie"
    )
    assert TOKEN not in stored
    browser.refresh()
    _wait(browser, lambda d: d.find_element(By.ID, "token-form").is_displayed(), "token again")
    assert csp_violations(browser) == []


def test_api_docs_page_runs_under_the_csp_with_a_token(browser, secured_server):
    from selenium.webdriver.common.by import By

    url, _ = secured_server
    browser.get(f"{url}/docs")
    _wait(browser, lambda d: d.find_element(By.ID, "docs-token-form").is_displayed(), "form")
    field = browser.find_element(By.ID, "docs-token")
    field.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#docs-token-form button").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), "the operations")
    text = browser.find_element(By.ID, "swagger-ui").text
    assert "/predict" in text and "/labels" in text
    assert csp_violations(browser) == []
