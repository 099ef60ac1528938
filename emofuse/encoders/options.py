"""Encoder options (``NAME?key=value&...``): one parser for every encoder, so that every
encoder accepts the same true/false words and reports unknown options the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from emofuse.encoders.base import EncoderError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def check_options(options: Mapping[str, str], allowed: Iterable[str], kind: str) -> None:
    """Refuse options an encoder does not know, naming the known ones."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EncoderError(
            f"unknown {kind} encoder option(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(allowed))}"
        )


def parse_bool(value: str | bool, *, name: str = "option") -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise EncoderError(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}")


def parse_int(value: str | int, *, name: str = "option", minimum: int | None = None) -> int:
    """A whole number, at least ``minimum`` when given."""
    try:
        number = int(value)
    except (TypeError, ValueError) as error:
        raise EncoderError(f"{name} must be an integer, not {value!r}") from error
    if minimum is not None and number < minimum:
        raise EncoderError(f"{name} must be at least {minimum}, not {number}")
    return number


def parse_float(value: str | float, *, name: str = "option") -> float:
    """A number."""
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise EncoderError(f"{name} must be a number, not {value!r}") from error


def parse_choice(value: str, choices: Sequence[str], *, name: str = "option") -> str:
    """``value`` when it is one of ``choices``; otherwise an error listing them."""
    text = str(value).strip()
    if text not in choices:
        raise EncoderError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")
    return text


def parse_int_range(value: str, *, name: str = "option") -> tuple[int, int]:
    """``"1-3"`` -> (1, 3), ``"2"`` -> (2, 2), ``"0"`` -> (0, 0) (off): n-gram ranges."""
    text = str(value).strip()
    if text == "0":
        return (0, 0)
    low, sep, high = text.partition("-")
    try:
        result = (int(low), int(high) if sep else int(low))
    except ValueError:
        result = (0, -1)
    if not 1 <= result[0] <= result[1]:
        raise EncoderError(f"{name} must look like '1-3', '2' or '0' (off), not {value!r}")
    return result
