"""Headless Chromium driven by Selenium, for the page tests (the service's page and the
labelling page): one set of flags, each test adding its own (a fake microphone, autoplay)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from support.requirements import need_chromium

#: Seconds a page may take to load.
PAGE_LOAD_S = 30


def headless_chromium(profile: Path, extra: Iterable[str] = ()):
    """A started Chrome driver (skips when Chromium or its driver is missing); the caller
    quits it. ``profile``: a fresh user-data folder; ``extra``: more command-line flags."""
    chromium, driver_bin = need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1000,1100",
        *extra,
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP reports
    driver = webdriver.Chrome(options=options, service=Service(str(driver_bin)))
    driver.set_page_load_timeout(PAGE_LOAD_S)
    return driver


def csp_violations(driver) -> list[str]:
    """The page's Content-Security-Policy refusals, from the browser log."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


def type_token(driver, token: str) -> None:
    """Type ``token`` into the token form both pages share (static/token.js) and send it."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "token-btn").click()
