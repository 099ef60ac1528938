"""Every skip says what is missing and how to get it (tests/support/requirements.py), and
the README says what the skipped tests need."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support import requirements
from support.requirements import (
    APT_LINE,
    PIP_LINE,
    need_chromium,
    need_espeak,
    need_module,
    need_shared,
    need_vosk,
)

TESTS = Path(__file__).resolve().parent
README = TESTS.parent / "README.md"
#: Skips that no install can lift (the platform: /proc, the `resource` module; an encoder
#: missing from the tree), counted per file.
PLATFORM_SKIPS = {
    "test_hostile.py": 2,
    "test_hostile_outputs.py": 1,
    "test_input_pipeline.py": 3,  # a CUDA GPU; Linux /proc; the fork start method
    "test_label_tokens_lock.py": 2,  # open-file-description locks (Linux)
}


def _reason(call) -> str:
    with pytest.raises(pytest.skip.Exception) as skipped:
        call()
    return str(skipped.value)


def test_a_missing_program_names_the_apt_line(monkeypatch):
    monkeypatch.setattr(requirements.shutil, "which", lambda name: None)
    monkeypatch.setattr(requirements, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.setattr(requirements, "CHROMEDRIVER", Path("/nonexistent/chromedriver"))
    assert APT_LINE == "sudo apt-get install espeak-ng chromium chromium-driver"
    espeak = _reason(need_espeak)
    assert "espeak-ng is not installed" in espeak and APT_LINE in espeak
    chromium = _reason(need_chromium)
    assert "chromium and chromedriver are not installed" in chromium and APT_LINE in chromium


def test_missing_team_data_says_whose_it_is():
    reason = _reason(lambda: need_shared("no-such-corpus", "manifest.csv"))
    assert "../shared/data" in reason and "no-such-corpus/manifest.csv" in reason
    assert "team's own data" in reason and "not in a user's clone" in reason


def test_a_missing_module_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "vosk", None)  # makes `import vosk` fail
    reason = _reason(need_vosk)
    assert "vosk" in reason and PIP_LINE in reason and "asr" in reason
    assert PIP_LINE in _reason(lambda: need_module("no_such_module_for_emofuse"))


def test_present_things_are_returned_not_skipped():
    if requirements.shutil.which("espeak-ng"):
        assert Path(need_espeak()).name == "espeak-ng"
    assert need_module("numpy").__name__ == "numpy"


def test_no_test_skips_without_the_helpers():
    """Skips go through tests/support/requirements.py (platform-only skips excepted)."""
    pattern = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skipif")
    stray = {}
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        found = len(pattern.findall(path.read_text(encoding="utf-8")))
        if found != PLATFORM_SKIPS.get(path.name, 0):
            stray[path.name] = found
    conftest = (TESTS / "conftest.py").read_text(encoding="utf-8")
    assert not pattern.search(conftest)
    assert not stray, (
        f"skips outside tests/support/requirements.py: {stray}; skip through its need_* "
        "helpers (the reason then says how to get what is missing), or count a skip that "
        "no install can lift in PLATFORM_SKIPS"
    )


def test_readme_says_what_the_skipped_tests_need():
    text = README.read_text(encoding="utf-8")
    head = text[: text.index("## ")]  # the install lines at the top
    assert APT_LINE in head and "../shared" in head
