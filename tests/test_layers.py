"""The import layers of docs/design.md hold: `lint-imports` (import-linter, the contracts in
pyproject.toml) finds no upward import and no import circle, and no module of the package
outgrows one idea."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: A module longer than this holds several ideas (issue "A house a newcomer can read").
MAX_MODULE_LINES = 450


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    return found


def test_import_layers_and_no_circles():
    done = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_the_layer_contract_would_catch_an_upward_import(tmp_path):
    """The contract is live: a copy of the package in which the corpus reader imports the
    bundle (an upward import) is refused."""
    copy = tmp_path / "emofuse"
    shutil.copytree(REPO / "emofuse", copy, ignore=shutil.ignore_patterns("__pycache__"))
    table = copy / "corpus" / "table.py"
    table.write_text(table.read_text() + "\n\ndef _upward():\n    import emofuse.bundle  # noqa\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    done = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode != 0
    assert "emofuse.corpus.table -> emofuse.bundle" in done.stdout


def test_no_module_outgrows_one_idea():
    long = {
        str(path.relative_to(REPO)): n
        for path in sorted((REPO / "emofuse").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by idea): {long}"
