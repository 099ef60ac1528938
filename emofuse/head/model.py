"""The fusion head: speech vector A and text vector T, concatenated, through
Linear -> ReLU -> Dropout -> Linear (the paper's Eq. 1-4; softmax at prediction), or,
as the ``linear`` kind, Dropout -> Linear (a multinomial logistic regression).

One class serves speech-only, text-only and fused models: the input is whatever
modalities the model was built for, concatenated speech first, and the per-modality
widths are recorded so that a saved model can check what it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from emofuse.head.config import HEAD_KINDS, clip_limit
from emofuse.modalities import BOTH, ENCODER_MODALITIES


def modality_of(input_dims: Mapping[str, int]) -> str:
    """'speech', 'text' or 'both' for a {modality: dim} mapping."""
    present = [m for m in ENCODER_MODALITIES if m in input_dims]  # x = [A; T]
    unknown = sorted(set(input_dims) - set(ENCODER_MODALITIES))
    if unknown or not present:
        raise ValueError(
            f"input dims must be keyed by 'speech' and/or 'text', got {dict(input_dims)}"
        )
    return BOTH if len(present) == 2 else present[0]


class FusionHead(nn.Module):
    """x = [A; T] -> Linear(hidden) -> ReLU -> Dropout -> Linear(n_classes) -> logits
    (``kind="mlp"``), or x -> Dropout -> Linear(n_classes) (``kind="linear"``, which
    ignores ``hidden``)."""

    def __init__(
        self,
        input_dim: int,
        n_classes: int,
        hidden: int = 256,
        dropout: float = 0.2,
        *,
        input_dims: Mapping[str, int] | None = None,
        kind: str = "mlp",
    ):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, not {kind!r}")
        if input_dim <= 0 or n_classes < 2 or hidden <= 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"bad head size: input_dim={input_dim}, n_classes={n_classes}, "
                f"hidden={hidden}, dropout={dropout} (need >0, >=2, >0, 0<=p<1)"
            )
        input_dims = dict(input_dims) if input_dims is not None else {"speech": input_dim}
        if sum(input_dims.values()) != input_dim:
            raise ValueError(f"input dims {input_dims} do not add up to input_dim={input_dim}")
        self.modality = modality_of(input_dims)
        # Kept in concatenation order so that slicing x back into A and T is well defined.
        self.input_dims = {m: int(input_dims[m]) for m in ENCODER_MODALITIES if m in input_dims}
        self.input_dim = input_dim
        self.n_classes = n_classes
        self.hidden = hidden
        self.dropout_p = dropout
        self.kind = kind
        if kind != "linear":  # the published layout, unchanged (same init order, same keys)
            self.fc1 = nn.Linear(input_dim, hidden)
            self.act = nn.ReLU()
            self.dropout = nn.Dropout(dropout)
            self.fc2 = nn.Linear(hidden, n_classes)
            if kind == "mlp+linear":
                self.skip = nn.Linear(input_dim, n_classes)
        else:
            self.dropout = nn.Dropout(dropout)
            self.fc2 = nn.Linear(input_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.fc2(self.dropout(x))
        out = self.fc2(self.dropout(self.act(self.fc1(x))))
        if self.kind == "mlp+linear":
            out = out + self.skip(x)
        return out

    def hparams(self) -> dict:
        """What rebuilds this head (besides its weights)."""
        out = {
            "input_dim": self.input_dim,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "dropout": self.dropout_p,
            "input_dims": dict(self.input_dims),
        }
        if self.kind != "mlp":  # bundles written before head kinds existed stay identical
            out["kind"] = self.kind
        return out

    @classmethod
    def from_hparams(cls, hparams: Mapping) -> FusionHead:
        return cls(
            int(hparams["input_dim"]),
            int(hparams["n_classes"]),
            hidden=int(hparams["hidden"]),
            dropout=float(hparams["dropout"]),
            input_dims={k: int(v) for k, v in hparams["input_dims"].items()},
            kind=str(hparams.get("kind", "mlp")),
        )


class Standardizer(nn.Module):
    """Per-feature (x - mean) / std, with mean and std fitted on the training rows,
    clipped to +-``limit`` (None: not clipped, as bundles saved before the limit were).

    Features that are (nearly) constant in training keep std 1, so an unseen value
    at test time is not blown up by a tiny denominator; the limit catches what the floor
    misses.
    """

    def __init__(self, dim: int, std_floor: float = 1e-5, limit: float | None = None):
        super().__init__()
        self.std_floor = std_floor
        self.limit = None if limit is None else float(limit)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @classmethod
    def fit(
        cls, x: np.ndarray | torch.Tensor, std_floor: float = 1e-5, clip: bool = True
    ) -> Standardizer:
        """Fitted on ``x``; clipped to +-:data:`~emofuse.head.config.Z_LIMIT` unless
        ``clip`` is False (the paper recipe, as published)."""
        data = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(
                f"standardizer needs a non-empty 2-D matrix, got shape {tuple(data.shape)}"
            )
        out = cls(data.shape[1], std_floor, clip_limit() if clip else None)
        mean = data.mean(dim=0)
        std = data.std(dim=0, unbiased=False)
        std = torch.where(std < std_floor, torch.ones_like(std), std)
        out.mean.copy_(mean.float())
        out.std.copy_(std.float())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return z if self.limit is None else z.clamp(-self.limit, self.limit)
