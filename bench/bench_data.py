"""Where the benchmarks find their data: a folder given on the command line. Nothing
points at the team's ../shared folder, which is not part of a user's clone; a missing
folder stops the benchmark with a message that says what to pass."""

from __future__ import annotations

from pathlib import Path

EMODB_FILES = ("manifest.csv",)
KOTE_FILES = ("labels.txt", "val.tsv", "test.tsv")


def data_folder(
    path: Path | None, flag: str, what: str, files: tuple[str, ...], otherwise: str = ""
) -> Path:
    """``path`` when it holds ``files``; otherwise exit naming ``flag`` (and ``otherwise``,
    another way to run the benchmark)."""
    holding = f"the {what} folder holding {', '.join(files)}"
    alternative = f", or {otherwise}" if otherwise else ""
    if path is None:
        raise SystemExit(f"this benchmark needs {what}: pass {flag} DIR ({holding}){alternative}")
    for name in files:
        if not (path / name).is_file():
            raise SystemExit(f"{path / name}: missing; pass {flag} DIR ({holding}){alternative}")
    return path


def emodb_folder(path: Path | None, otherwise: str = "") -> Path:
    """The EmoDB folder given with --emodb (manifest.csv, audio paths relative to it)."""
    return data_folder(path, "--emodb", "EmoDB", EMODB_FILES, otherwise)
