"""The `emofuse` command: thin subcommands over the importable API.

Each subcommand lives in its own module here and exposes ``register(subparsers)``; the
module imports heavy libraries inside its handler so that `emofuse --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Subcommand modules, in the order the data flows; `build_parser` imports every one of them
#: (only its `register`: heavy imports wait in the handler).
COMMAND_MODULES = (
    "demo_data",  # emofuse demo-data DIR
    "prepare",  # emofuse prepare SOURCE -o corpus.parquet
    "split",  # emofuse split / emofuse leakage
    "sample",  # emofuse sample
    "extract",  # emofuse extract
    "train",  # emofuse train
    "evaluate",  # emofuse evaluate
    "predict",  # emofuse predict
    "suggest",  # emofuse suggest BUNDLE POOL -n N -o next.csv
    "timeline",  # emofuse timeline BUNDLE RECORDING -o OUT/
    "experiment",  # emofuse experiment CONFIG
    "serve",  # emofuse serve BUNDLE
    "label",  # emofuse label POOL -o answers.csv
    "demo",  # emofuse demo
)


class CommandError(Exception):
    """An error to show the user as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from emofuse import __version__

    parser = argparse.ArgumentParser(
        prog="emofuse",
        description="Data-efficient multimodal (speech + text) emotion recognition.",
    )
    parser.add_argument("--version", action="version", version=f"emofuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"emofuse.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except CommandError as err:
        print(f"emofuse {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emofuse {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:
        # Unwritable output, full disk, read-only store: one line naming the file.
        print(f"emofuse {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    return int(result or 0)


def describe_os_error(err: OSError) -> str:
    """``path: reason`` for an OSError (the path first, as every emofuse error names it)."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
        return f"{where}: {reason}"
    return reason
