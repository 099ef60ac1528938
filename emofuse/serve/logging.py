"""Log settings for `emofuse serve`: uvicorn's own access log is off (it writes client
addresses and full request paths); ours (emofuse.serve.access) writes method, route,
status, size and latency only. ``--log-level`` sets how much emofuse and uvicorn say;
other libraries stay at WARNING, so debug output cannot pull in their request dumps.
Tracebacks keep their frames but not their messages, which may quote a transcript or a
file name."""

from __future__ import annotations

import logging
import traceback
from typing import Any

LEVELS = ("critical", "error", "warning", "info", "debug")


def log_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict (uvicorn's ``log_config``)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "()": PrivateFormatter,
                "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
                "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "emofuse": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            # Never on: uvicorn's access lines carry addresses and raw paths.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


class PrivateFormatter(logging.Formatter):
    """Tracebacks say where an error happened, never what it said: an exception's message
    may quote the request (``ValueError: cannot encode 'my secret diary'``)."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        chain = []
        error = ei[1]
        while error is not None and all(error is not seen for seen in chain):
            chain.append(error)
            error = error.__cause__ or error.__context__
        lines: list[str] = []
        for error in reversed(chain):
            lines.append("Traceback (most recent call last):\n")
            lines += traceback.format_list(traceback.extract_tb(error.__traceback__))
            kind = type(error)
            lines.append(
                f"{kind.__module__}.{kind.__qualname__} (message withheld: it may quote "
                "request data)\n"
            )
        return "".join(lines).rstrip("\n")
