"""The labelling page (`emofuse label`, issue 25) in headless Chromium (Selenium): the clip
plays, a key labels it, undo and skip, a restarted server resumes where the annotator left
off, two annotators with their own tokens see whether they agree, a label set beyond nine
is searched, and a text-only pool shows its text. Every answer is checked in answers.csv."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from support.browser import csp_violations, headless_chromium, type_token
from support.serve_support import live_server
from test_label_api import TEXTS, make_desk, make_pool

from emofuse.corpus.answers import read_answers, resolve_answers
from emofuse.labelling.app import create_label_app
from emofuse.serve.security import SecuritySettings
from emofuse.serve.tokens import Tokens

WAIT_S = 30
LABELS = "calm,tense,sad"
TOKEN_ALICE = "alice-" + secrets.token_urlsafe(16)
TOKEN_BOB = "bob-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        ("--autoplay-policy=no-user-gesture-required", "--mute-audio"),
    )
    yield driver
    driver.quit()


def serve_desk(desk, tokens: Tokens | None = None, annotator: str = "anonymous"):
    security = SecuritySettings(tokens=tokens, local_hosts_only=tokens is None, rate_per_minute=0)
    return live_server(create_label_app(desk, security=security, annotator=annotator))


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited for {what}")


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _shown_clip(driver) -> str:
    from selenium.webdriver.common.by import By

    if not driver.find_element(By.ID, "clip").is_displayed():
        return ""
    return driver.find_element(By.ID, "clip-id").text


def _wait_clip(driver, ident: str) -> None:
    _wait(driver, lambda d: _shown_clip(d) == ident, f"clip {ident}")


def _press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def _progress(driver) -> dict[str, tuple[int, int]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#progress-table tbody tr")
    return {
        row.get_attribute("data-label"): (
            int(row.find_element(By.CSS_SELECTOR, "td.mine").text),
            int(row.find_element(By.CSS_SELECTOR, "td.everyone").text),
        )
        for row in rows
    }


def _answers(path: Path) -> list[tuple[str, str, str, str]]:
    return [(a.id, a.label, a.annotator, a.action) for a in read_answers(path).answers]


def _enter_token(driver, token: str) -> None:
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.find_element(By.ID, "token-form").is_displayed(), "token form")
    type_token(driver, token)


def test_play_label_by_key_undo_and_skip(browser, tmp_path):
    pool = make_pool(tmp_path / "pool")
    answers = tmp_path / "answers.csv"
    with serve_desk(make_desk(pool, answers), annotator="mina") as url:
        browser.get(url)
        _wait_clip(browser, "clip0")
        assert _text(browser, "transcript") == TEXTS[0]
        assert "Labelling as mina" in _text(browser, "who")
        # The clip is fetched with the page's credentials and plays from a blob.
        _wait(
            browser,
            lambda d: d.execute_script(
                "const p = document.getElementById('player');"
                "return p.dataset.clip === 'clip0' && p.readyState >= 2 && p.currentTime > 0;"
            ),
            "the clip to play",
        )
        player = browser.execute_script(
            "const p = document.getElementById('player');return {src: p.src, duration: p.duration};"
        )
        assert player["src"].startswith("blob:") and player["duration"] == pytest.approx(0.5, 0.05)

        _press(browser, "2")  # the second label: tense
        _wait_clip(browser, "clip1")
        assert _answers(answers) == [("clip0", "tense", "mina", "label")]
        assert _progress(browser)["tense"] == (1, 1)
        assert "Your last answer: tense" in _text(browser, "last")
        _wait(
            browser,
            lambda d: (
                d.execute_script("return document.getElementById('player').dataset.clip") == "clip1"
            ),
            "the next clip's audio",
        )

        _press(browser, "u")
        _wait_clip(browser, "clip0")
        assert _answers(answers)[-1] == ("clip0", "", "mina", "retract")
        assert _progress(browser)["tense"] == (0, 0)

        _press(browser, "s")  # skip clip0: it comes back after the rest
        _wait_clip(browser, "clip1")
        for key, ident in (("1", "clip2"), ("3", "clip3"), ("3", "clip0")):
            _press(browser, key)
            _wait_clip(browser, ident)
        _press(browser, "1")
        _wait(browser, lambda d: _text(d, "done") != "", "the end of the pool")
        assert resolve_answers(answers).labels == {
            "clip1": "calm", "clip2": "sad", "clip3": "sad", "clip0": "calm"
        }  # fmt: skip
        assert _progress(browser) == {"calm": (2, 2), "tense": (0, 0), "sad": (2, 2)}
        assert csp_violations(browser) == []


def test_a_restarted_server_resumes_in_the_page(browser, tmp_path):
    pool = make_pool(tmp_path / "pool")
    answers = tmp_path / "answers.csv"
    with serve_desk(make_desk(pool, answers)) as url:
        browser.get(url)
        _wait_clip(browser, "clip0")
        _press(browser, "1")
        _wait_clip(browser, "clip1")
        _press(browser, "3")
        _wait_clip(browser, "clip2")
    with serve_desk(make_desk(pool, answers)) as url:  # a new server, the same answers.csv
        browser.get(url)
        _wait_clip(browser, "clip2")
        assert _progress(browser)["calm"] == (1, 1) and _progress(browser)["sad"] == (1, 1)
        assert "Your last answer: sad (clip clip1)" in _text(browser, "last")
        _press(browser, "u")  # the undo reaches the answer given before the restart
        _wait_clip(browser, "clip1")
    assert _answers(answers)[-1] == ("clip1", "", "anonymous", "retract")


def test_two_annotators_with_their_tokens_see_agreement(browser, tmp_path):
    pool = make_pool(tmp_path / "pool")
    answers = tmp_path / "answers.csv"
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"alice {TOKEN_ALICE}\nbob {TOKEN_BOB}\n")
    with serve_desk(make_desk(pool, answers), Tokens.from_file(token_file)) as url:
        browser.get(url)
        _enter_token(browser, "wrong-token-" + "w" * 20)
        _wait(browser, lambda d: "not accepted" in _text(d, "error"), "the refusal")
        _enter_token(browser, TOKEN_ALICE)
        _wait_clip(browser, "clip0")
        assert "Labelling as alice" in _text(browser, "who")
        _press(browser, "1")
        _wait_clip(browser, "clip1")
        _press(browser, "2")
        _wait_clip(browser, "clip2")

        browser.refresh()  # the token was in memory only: the page asks again
        _enter_token(browser, TOKEN_BOB)
        _wait_clip(browser, "clip0")  # Bob walks the same clips on his own
        assert "Labelling as bob" in _text(browser, "who")
        _press(browser, "1")
        _wait_clip(browser, "clip1")
        last = _text(browser, "last")
        assert "Others agree (alice: calm)" in last
        assert "agree" in browser.find_element("id", "last").get_attribute("class")
        _press(browser, "3")
        _wait_clip(browser, "clip2")
        assert "Others said alice: tense" in _text(browser, "last")
        assert "disagree" in browser.find_element("id", "last").get_attribute("class")
        assert "two or more annotators: 2; all agree on 1 (50 %)" in _text(browser, "agreement")
        stored = browser.execute_script(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie"
        )
        assert TOKEN_BOB not in stored and TOKEN_ALICE not in stored
    assert resolve_answers(answers).by_annotator == {
        "clip0": {"alice": "calm", "bob": "calm"},
        "clip1": {"alice": "tense", "bob": "sad"},
    }


def test_beyond_nine_labels_a_search_picks_the_label(browser, tmp_path):
    pool = make_pool(tmp_path / "pool", n=2)
    answers = tmp_path / "answers.csv"
    many = "happy,sad,angry,calm,tense,bored,proud,afraid,disgusted,relieved,curious,ashamed"
    with serve_desk(make_desk(pool, answers, labels=many)) as url:
        browser.get(url)
        _wait_clip(browser, "clip0")
        _press(browser, "9")
        _wait_clip(browser, "clip1")
        _press(browser, "/")
        _press(browser, "reli")
        _wait(browser, lambda d: _text(d, "label-list").strip() == "relieved", "the filtered list")
        _press(browser, "\n")
        _wait(browser, lambda d: _text(d, "done") != "", "the end of the pool")
    assert resolve_answers(answers).labels == {"clip0": "disgusted", "clip1": "relieved"}


def test_a_text_only_pool_shows_the_text(browser, tmp_path):
    pool = tmp_path / "sentences.csv"
    pool.write_text("text\n" + "\n".join(f'"{t}"' for t in TEXTS[:2]) + "\n", encoding="utf-8")
    answers = tmp_path / "answers.csv"
    with serve_desk(make_desk(pool, answers)) as url:
        browser.get(url)
        _wait(browser, lambda d: _text(d, "transcript") == TEXTS[0], "the text")
        assert browser.find_element("id", "no-audio").is_displayed()
        assert not browser.find_element("id", "player").is_displayed()
        _press(browser, "2")
        _wait(browser, lambda d: _text(d, "transcript") == TEXTS[1], "the next text")
        assert _text(browser, "error") == ""
    assert [a.label for a in read_answers(answers).answers] == ["tense"]
