"""Encoder plug-ins for any command: `--plugin MODULE` (repeatable) or
`$EMOFUSE_PLUGINS=mod1,mod2`; importing the module registers its encoders
(`emofuse.encoders.register_encoder`)."""

from __future__ import annotations

import argparse
import importlib
import os

PLUGINS_ENV = "EMOFUSE_PLUGINS"


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"import MODULE first (it registers encoders); also ${PLUGINS_ENV}=mod1,mod2",
    )


def load_plugins(modules: list[str]) -> None:
    """Import the plug-ins named on the command line and in the environment."""
    from emofuse.cli import CommandError

    names = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()] + list(modules)
    for name in names:
        try:
            importlib.import_module(name.strip())
        except ImportError as error:
            raise CommandError(f"cannot import encoder plug-in {name!r}: {error}") from error
