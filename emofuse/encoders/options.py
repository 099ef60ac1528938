"""Encoder options (``NAME?key=value&...``): one parser for every encoder, so that every
encoder accepts the same true/false words and reports unknown options the same way."""

from __future__ import annotations

from collections.abc import Mapping

from emofuse.encoders.base import EncoderError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def check_options(options: Mapping[str, str], allowed: set[str] | frozenset[str], kind: str) -> None:
    """Refuse options an encoder does not know, naming the known ones."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EncoderError(
            f"unknown {kind} encoder option(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(allowed))}"
        )


def parse_bool(value: str | bool, *, name: str = "option") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise EncoderError(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}")


def parse_int(value: str | int, *, name: str = "option", minimum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise EncoderError(f"{name} must be an integer, not {value!r}") from error
    if minimum is not None and number < minimum:
        raise EncoderError(f"{name} must be at least {minimum}, not {number}")
    return number


def parse_float(value: str | float, *, name: str = "option") -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise EncoderError(f"{name} must be a number, not {value!r}") from error
