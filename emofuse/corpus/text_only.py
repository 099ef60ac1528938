"""Tables without audio: text-only corpora (a manifest of `text` and `label`), and mixed
tables where only some rows have audio.

A row has audio when its `audio` cell is non-empty. A speech or fused model needs audio;
:func:`require_audio` is the one check that says so before any feature is computed.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd

from emofuse.modalities import BOTH, SPEECH

AudioStatus = Literal["audio", "text-only", "mixed", "empty"]


class NoAudioError(ValueError):
    """A speech or fused model asked of a table that has no audio."""


class MixedAudioWarning(UserWarning):
    """Some rows of a table have no audio; a speech or fused model leaves them out."""


def has_audio(table: pd.DataFrame) -> np.ndarray:
    """Per row: True when the row names an audio file."""
    if "audio" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return (table["audio"].fillna("").astype(str).str.strip() != "").to_numpy()


def audio_status(table: pd.DataFrame) -> AudioStatus:
    """``audio`` (every row has audio), ``text-only`` (none has), ``mixed`` or ``empty``."""
    if not len(table):
        return "empty"
    mask = has_audio(table)
    if mask.all():
        return "audio"
    return "mixed" if mask.any() else "text-only"


def mixed_audio_note(without: int, total: int) -> str:
    """The summary line of a table where ``without`` of ``total`` rows have no audio."""
    return (
        f"mixed corpus: {without} of {total} rows have no audio (text only); text models "
        "use every row, speech and fused models only the rows with audio"
    )


def require_audio(
    table: pd.DataFrame,
    modality: str,
    *,
    source: str = "the corpus",
    asked: str | None = None,
    instead: str = "--modality text",
) -> pd.DataFrame:
    """The rows a model of ``modality`` can use.

    ``text``: the table as it is. ``speech``/``both``: raises :class:`NoAudioError` (one
    line naming ``source``, what was ``asked`` -- default ``--modality <modality>`` -- and
    what to do ``instead``) when no row has audio; on a mixed table, warns
    (:class:`MixedAudioWarning`) and returns the rows with audio (index kept).
    """
    if modality not in (SPEECH, BOTH):
        return table
    asked = asked or f"--modality {modality}"
    mask = has_audio(table)
    if len(table) and not mask.any():
        raise NoAudioError(
            f"{source} has no audio (a text-only corpus): {asked} needs audio; use {instead}"
        )
    if not mask.all():
        warnings.warn(
            f"{source}: {mixed_audio_note(int((~mask).sum()), len(table))}; "
            f"{asked} leaves those {int((~mask).sum())} rows out",
            MixedAudioWarning,
            stacklevel=2,
        )
        return table.loc[mask]
    return table


def default_sort_key(table: pd.DataFrame) -> str:
    """What shortest/longest-first measures when not told: ``duration_s`` when any row
    has a duration, ``text_length`` for a table without durations (a text-only corpus)."""
    if "duration_s" not in table.columns:
        return "text_length"
    durations = pd.to_numeric(table["duration_s"], errors="coerce")
    return "duration_s" if durations.notna().any() else "text_length"
