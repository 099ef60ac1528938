"""The scoring math: vectors in, class probabilities out, for every caller.

Training (validation scores), evaluation, prediction, the grids and the service all end
in :func:`probabilities_from_features`, so the same vectors always give the same
probabilities. A leaf of :mod:`emofuse.head`: it knows a fitted head and its
standardiser, nothing about bundles, files or encoders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from emofuse.head.speaker_norm import Moments, SpeakerNorm
from emofuse.modalities import SPEECH, TEXT

#: Per-speaker statistics of unlabelled clips (speech block of x = [A; T]), by speaker name.
SpeakerStats = Mapping[str, Moments]


class ScoringError(ValueError):
    """Vectors the head cannot score (wrong width, a missing modality, NaN); callers that
    know the clip or the bundle re-raise it with that name."""


class HeadLike(Protocol):
    """What scores vectors: :class:`~emofuse.head.train.TrainedHead` and
    :class:`~emofuse.bundle.Bundle` both have a fitted head and standardiser."""

    head: Any
    standardizer: Any


def probabilities_from_features(
    model: HeadLike,
    features: Mapping[str, np.ndarray] | np.ndarray,
    *,
    speakers: Sequence[Any] | None = None,
    speaker_stats: SpeakerStats | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """Class probabilities, shape (n, n_classes), from vectors.

    ``features`` is ``{modality: (n, dim)}`` (checked against the widths the head was
    trained on, concatenated speech first: x = [A; T]) or the already stacked (n, total)
    matrix. ``model`` is a :class:`~emofuse.head.train.TrainedHead` or a bundle. Every path that
    scores vectors (evaluate, predict, serve, grid cells) calls this function.

    A model that adapts to speakers (``model.speaker_norm``) normalises each row by its
    speaker's statistics first (:func:`adapt_to_speakers`): ``speakers`` names the speaker
    of each row, ``speaker_stats`` gives their statistics (default: those of the rows
    given here). Without ``speakers`` nothing is adapted.
    """
    import torch

    head, standardizer = model.head, model.standardizer
    temperature = float(getattr(model, "temperature", 1.0))
    x = stacked_features(head, features)
    x = adapt_to_speakers(getattr(model, "speaker_norm", None), x, speakers, speaker_stats)
    head.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = head(standardizer(torch.from_numpy(x[start : start + batch_size])))
            if temperature != 1.0:
                logits = logits / temperature
            out.append(torch.softmax(logits, dim=1).numpy())
    if not out:
        return np.zeros((0, head.n_classes), dtype=np.float32)
    return np.concatenate(out)


def modality_probabilities(
    model: Any,
    features: Mapping[str, np.ndarray] | np.ndarray,
    *,
    speakers: Sequence[Any] | None = None,
    speaker_stats: SpeakerStats | None = None,
) -> dict[str, np.ndarray]:
    """``{modality: (n, n_classes)}`` from the single-modality heads a ``both`` model
    carries (``model.modality_heads``); empty when it has none. The speech block is adapted
    to speakers as for the fused head (the speech-only head learnt on the same rows)."""
    extra = getattr(model, "modality_heads", None) or {}
    if not extra:
        return {}
    x = stacked_features(model.head, features)
    x = adapt_to_speakers(getattr(model, "speaker_norm", None), x, speakers, speaker_stats)
    dims, start, split = dict(model.head.input_dims), 0, {}
    for m in (SPEECH, TEXT):
        if m in dims:
            split[m], start = x[:, start : start + dims[m]], start + dims[m]
    return {m: probabilities_from_features(h, {m: split[m]}) for m, h in extra.items()}


def adapt_to_speakers(
    norm: SpeakerNorm | None,
    x: np.ndarray,
    speakers: Sequence[Any] | None,
    speaker_stats: SpeakerStats | None = None,
) -> np.ndarray:
    """x with each row's speech block normalised by its speaker's (shrunk) statistics:
    ``speaker_stats`` by name, or those of the rows of ``x`` itself. Unchanged without a
    normalisation, without ``speakers``, and for rows whose speaker is blank or unknown."""
    if norm is None or speakers is None:
        return x
    if len(speakers) != len(x):
        raise ScoringError(f"{len(x)} rows but {len(speakers)} speaker names")
    return norm.transform_groups(x, speakers, speaker_stats)


def speech_block(model: Any, features: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """The raw columns a model's speaker statistics are taken over (its speech block), for
    accumulating :class:`~emofuse.head.speaker_norm.Moments`; empty columns without one."""
    x = stacked_features(model.head, features)
    norm = getattr(model, "speaker_norm", None)
    if norm is None:
        return x[:, :0]
    return x[:, norm.start : norm.stop]


def agreement(by_modality: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per row: whether the speech-only and text-only heads name the same label."""
    if SPEECH not in by_modality or TEXT not in by_modality:
        return None
    return by_modality[SPEECH].argmax(axis=1) == by_modality[TEXT].argmax(axis=1)


def stacked_features(head: Any, features: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """x = [A; T] as one float32 matrix, checked against the widths the head was trained on."""
    dims = dict(head.input_dims)
    if not isinstance(features, Mapping):
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != head.input_dim:
            raise ScoringError(
                f"features have shape {x.shape}; the head reads {head.input_dim} values per clip"
            )
        blocks = [x]
    else:
        blocks, rows = [], None
        for m in (SPEECH, TEXT):
            if m not in dims:
                continue
            if features.get(m) is None:
                raise ScoringError(f"a {'+'.join(dims)} model needs {m} features")
            block = np.asarray(features[m], dtype=np.float32)
            if block.ndim == 1:
                block = block[None, :]
            if block.ndim != 2 or block.shape[1] != dims[m]:
                raise ScoringError(
                    f"{m} features have shape {block.shape}; the model's {m} encoder gives "
                    f"{dims[m]} values per clip"
                )
            if rows is not None and block.shape[0] != rows:
                raise ScoringError(f"speech has {rows} rows but text has {block.shape[0]}")
            rows = block.shape[0]
            blocks.append(block)
    x = np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)
    if not np.isfinite(x).all():
        raise ScoringError("features contain NaN or infinite values")
    return x


def labels_of(probabilities: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The most probable label of each row."""
    return [labels[int(i)] for i in np.asarray(probabilities).argmax(axis=1)]
