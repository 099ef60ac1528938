"""Argument patterns, input reading and printing that several commands share, so each
says the same thing the same way: a subcommand whose description is its module
docstring, ``--seed``, ``--no-progress``, ``--verbose``, ``-o/--output``; tables, bundles and the
transcriber loaded with a one-line error; the metrics printout."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emofuse.cli import CommandError


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    doc: str | None,
) -> argparse.ArgumentParser:
    """A subcommand run by ``handler``; its description is ``doc`` (the command module's
    docstring) without its first line, which names the command."""
    description = doc.split("\n\n", 1)[1].strip() if doc and "\n\n" in doc else help
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_seed(parser: argparse.ArgumentParser, what: str = "random seed") -> None:
    parser.add_argument("--seed", type=int, default=0, help=f"{what} (default: 0)")


def add_no_progress(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--no-progress`` (and any older spelling in ``names``, e.g. ``--quiet``)."""
    parser.add_argument(
        "--no-progress", *names, dest="no_progress", action="store_true", help="no progress bars"
    )


def add_verbose(parser: argparse.ArgumentParser, what: str) -> None:
    """``-v/--verbose``: ``what`` says what more is printed."""
    parser.add_argument("-v", "--verbose", action="store_true", help=what)


def add_output(parser: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    """``-o/--output`` (required unless a ``default`` is given)."""
    kwargs.setdefault("required", "default" not in kwargs)
    parser.add_argument("-o", "--output", help=help, **kwargs)


def read_table(path: str | Path) -> tuple[Any, list[str]]:
    """An utterance table and its class order (from `emofuse prepare` or `emofuse split`),
    or a :class:`CommandError` naming the file and the problem."""
    from emofuse.corpus.table import CorpusTableError, read_table

    try:
        return read_table(path)
    except (FileNotFoundError, CorpusTableError) as err:
        raise CommandError(str(err)) from None


#: The extensions of a corpus or split table an -o may name: `write_table` writes CSV for
#: .csv (with the class order in a .labels.json beside it) and Parquet for the others.
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


def check_table_output(path: str | Path) -> None:
    """A corpus or split table is written in the format its extension names: an -o with
    any other extension (.tsv, .CSV, none) is refused before any work."""
    suffix = Path(path).suffix
    if suffix not in TABLE_SUFFIXES:
        raise CommandError(
            f"-o {path}: a table is written in the format its extension names: "
            f"{', '.join(TABLE_SUFFIXES)} (not {suffix or 'no extension'!r})"
        )


def read_any_table(path: str | Path, what: str = "table", hint: str = "") -> Any:
    """A .csv (all columns as text) or .parquet table with any columns, or a
    :class:`CommandError` naming the file (``hint`` says how to make one)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such {what}" + (f" ({hint})" if hint else ""))
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except Exception as err:  # a clear one-liner beats a parser's traceback
        raise CommandError(f"{path}: cannot read as {path.suffix or 'parquet'}: {err}") from None


def load_bundle(path: str | Path) -> Any:
    """A saved model bundle, or a :class:`CommandError` naming the problem."""
    from emofuse.bundle import Bundle, BundleError

    try:
        return Bundle.load(path)
    except BundleError as err:
        raise CommandError(str(err)) from None


def build_asr(name: str) -> Any:
    """The transcriber ``--asr NAME`` asks for, or a :class:`CommandError`."""
    from emofuse.asr import build_asr as build

    try:
        return build(name)
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        raise CommandError(f"--asr {name}: {err}") from None


def print_metrics(metrics: dict) -> None:
    """The headline metrics, then precision / recall / F1 / support per class."""
    from emofuse.metrics import format_metrics

    print(format_metrics(metrics))
    width = max(len(label) for label in metrics["labels"])
    print(f"{'':{width}}  precision  recall     f1  support")
    for label in metrics["labels"]:
        c = metrics["per_class"][label]
        print(
            f"{label:{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  "
            f"{c['support']:7d}"
        )
