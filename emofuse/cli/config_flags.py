"""Command-line flags generated from a settings dataclass, and the dataclass back from
the parsed arguments: one flag per field (``batch_size`` -> ``--batch-size``), its type,
default and help taken from the field, so a new setting needs no CLI code.

Flags default to "not given" (argparse.SUPPRESS): :func:`config_from_args` fills only the
fields the user set, so two dataclasses that share a field (the head's and fine-tuning's
``--epochs``) each keep their own default.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _field_type(config_cls: type, field: dataclasses.Field) -> tuple[type, bool]:
    """(base type, optional) of a field: ``int | None`` -> (int, True)."""
    hint = typing.get_type_hints(config_cls)[field.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (base,) = [a for a in args if a is not type(None)]
        return base, True
    return hint, False


def _parser_for(base: type, optional: bool):
    if not optional:
        return base

    def parse(value: str):
        return None if value.strip().lower() in ("", "none") else base(value)

    parse.__name__ = base.__name__
    return parse


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_cls: type,
    *,
    skip: Collection[str] = (),
    other_defaults: Mapping[str, type] | None = None,
) -> list[str]:
    """Add one flag per field of ``config_cls`` (except ``skip``) and return the field names.

    Help comes from ``field.metadata["help"]``, choices from ``metadata["choices"]``;
    booleans get ``--flag / --no-flag``. ``other_defaults`` maps a phrase (``"with
    --finetune"``) to another dataclass whose default for the same field is also shown.
    """
    names = []
    for field in dataclasses.fields(config_cls):
        if field.name in skip or not field.init:
            continue
        base, optional = _field_type(config_cls, field)
        default = _default_of(field)
        shown = f"default: {default}"
        for phrase, other in (other_defaults or {}).items():
            other_fields = {f.name: f for f in dataclasses.fields(other)}
            if field.name in other_fields and _default_of(other_fields[field.name]) != default:
                shown += f"; {phrase}: {_default_of(other_fields[field.name])}"
        help_text = f"{field.metadata.get('help', '')} ({shown})"
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _parser_for(base, optional)
            kwargs["metavar"] = base.__name__.upper()
            if "choices" in field.metadata:
                kwargs["choices"] = field.metadata["choices"]
                kwargs.pop("metavar")
        parser.add_argument(flag_name(field.name), help=help_text, **kwargs)
        names.append(field.name)
    return names


def given_fields(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """The fields of ``config_cls`` the user set on the command line."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config_cls)
        if hasattr(args, f.name)
    }


def config_from_args(config_cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """``config_cls`` with the fields the user set (the rest keep their defaults)."""
    return config_cls(**{**given_fields(args, config_cls), **overrides})
