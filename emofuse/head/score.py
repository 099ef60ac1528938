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

from emofuse.modalities import SPEECH, TEXT


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
    batch_size: int = 4096,
) -> np.ndarray:
    """Class probabilities, shape (n, n_classes), from vectors.

    ``features`` is ``{modality: (n, dim)}`` (checked against the widths the head was
    trained on, concatenated speech first: x = [A; T]) or the already stacked (n, total)
    matrix. ``model`` is a :class:`~emofuse.head.train.TrainedHead` or a bundle. Every path that
    scores vectors (evaluate, predict, serve, grid cells) calls this function.
    """
    import torch

    head, standardizer = model.head, model.standardizer
    temperature = float(getattr(model, "temperature", 1.0))
    x = stacked_features(head, features)
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
    model: Any, features: Mapping[str, np.ndarray] | np.ndarray
) -> dict[str, np.ndarray]:
    """``{modality: (n, n_classes)}`` from the single-modality heads a ``both`` model
    carries (``model.modality_heads``); empty when it has none."""
    extra = getattr(model, "modality_heads", None) or {}
    if not extra:
        return {}
    if not isinstance(features, Mapping):
        x = stacked_features(model.head, features)
        dims, start, split = dict(model.head.input_dims), 0, {}
        for m in (SPEECH, TEXT):
            if m in dims:
                split[m], start = x[:, start : start + dims[m]], start + dims[m]
        features = split
    return {m: probabilities_from_features(h, {m: features[m]}) for m, h in extra.items()}


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
