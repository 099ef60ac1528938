"""Training the fusion head on fixed feature vectors: standardise, AdamW, keep the
epoch with the best validation UAR. Seeded runs on CPU repeat exactly."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emofuse.metrics import unweighted_average_recall
from emofuse.model import FusionHead, Standardizer
from emofuse.train_config import (
    TrainConfig as TrainConfig,  # re-exported: emofuse.train.TrainConfig
)
from emofuse.train_config import train_config_problems as train_config_problems


@dataclass
class TrainedHead:
    """A fitted standardiser + head, and how training went."""

    head: FusionHead
    standardizer: Standardizer
    config: TrainConfig
    history: list[dict[str, float]]
    best_epoch: int  # 1-based

    @property
    def input_dims(self) -> dict[str, int]:
        return dict(self.head.input_dims)

    @property
    def modality(self) -> str:
        return self.head.modality

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        data = _as_matrix(x, "X", self.head.input_dim)
        self.head.eval()
        out = [
            self.head(self.standardizer(torch.from_numpy(data[i : i + batch_size])))
            for i in range(0, len(data), batch_size)
        ]
        if not out:
            return np.zeros((0, self.head.n_classes), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes)."""
        return torch.softmax(torch.from_numpy(self.logits(x)), dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices."""
        return self.logits(x).argmax(axis=1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Head and standardiser tensors, for safetensors."""
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        tensors.update({f"standardizer.{k}": v for k, v in self.standardizer.state_dict().items()})
        return {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"{what} must be a 2-D matrix (rows = clips), got shape {data.shape}")
    if dim is not None and data.shape[1] != dim:
        raise ValueError(f"{what} has {data.shape[1]} columns; the model expects {dim}")
    if not np.isfinite(data).all():
        bad = np.where(~np.isfinite(data).all(axis=1))[0]
        raise ValueError(
            f"{what} has NaN/inf values in {len(bad)} rows, e.g. rows {bad[:5].tolist()}"
        )
    return np.ascontiguousarray(data)


def _as_labels(y: np.ndarray, n: int, n_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(y)
    if labels.shape != (n,):
        raise ValueError(
            f"{what} must hold one class index per row ({n}), got shape {labels.shape}"
        )
    if n and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_classes
    ):
        raise ValueError(f"{what} must hold class indices in 0..{n_classes - 1}")
    return labels.astype(np.int64)


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def fit_head(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    n_classes: int,
    config: TrainConfig | None = None,
    input_dims: Mapping[str, int] | None = None,
    progress: bool = True,
) -> TrainedHead:
    """Train a :class:`FusionHead` on feature rows (speech columns first, then text).

    ``input_dims`` ({"speech": d_a, "text": d_t}) records which modality each column
    block holds; default: all columns are speech. With a validation set the epoch
    with the best validation UAR is kept (ties: lower validation loss); without one,
    the last epoch.
    """
    config = config or TrainConfig()
    x_train = _as_matrix(X_train, "X_train")
    y_train = _as_labels(y_train, len(x_train), n_classes, "y_train")
    if len(x_train) == 0:
        raise ValueError("no training rows")
    has_val = X_val is not None and len(X_val) > 0
    if has_val:
        x_val = _as_matrix(X_val, "X_val", x_train.shape[1])
        y_val = _as_labels(y_val, len(x_val), n_classes, "y_val")
    input_dims = dict(input_dims) if input_dims else {"speech": x_train.shape[1]}

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    # fork_rng keeps the caller's global RNG untouched while dropout draws from it.
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _train(
                x_train, y_train, (x_val, y_val) if has_val else None,
                n_classes, config, input_dims, progress,
            )  # fmt: skip
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)


def _train(x_train, y_train, val, n_classes, config, input_dims, progress) -> TrainedHead:
    from tqdm.auto import tqdm

    standardizer = Standardizer.fit(x_train)
    head = FusionHead(
        x_train.shape[1], n_classes, config.hidden, config.dropout, input_dims=input_dims
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weight = _class_weights(y_train, n_classes) if config.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    eval_loss_fn = nn.CrossEntropyLoss(weight=weight)
    xs = standardizer(torch.from_numpy(x_train))
    ys = torch.from_numpy(y_train)
    if val is not None:
        xv = standardizer(torch.from_numpy(val[0]))
        yv = torch.from_numpy(val[1])
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(xs) / config.batch_size)

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state, best_epoch = None, config.epochs
    bar = tqdm(
        total=config.epochs * steps_per_epoch, desc="training", unit="step",
        disable=not progress, leave=False,
    )  # fmt: skip
    try:
        for epoch in range(1, config.epochs + 1):
            head.train()
            order = torch.randperm(len(xs), generator=generator)
            total = 0.0
            for start in range(0, len(xs), config.batch_size):
                idx = order[start : start + config.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(head(xs[idx]), ys[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                bar.update(1)
            row = {"epoch": epoch, "train_loss": total / len(xs)}
            if val is not None:
                head.eval()
                with torch.no_grad():
                    logits = head(xv)
                row["val_loss"] = float(eval_loss_fn(logits, yv))
                pred = logits.argmax(dim=1).numpy()
                row["val_uar"] = unweighted_average_recall(yv.numpy(), pred, n_classes)
                row["val_accuracy"] = float((pred == yv.numpy()).mean())
                key = (row["val_uar"], -row["val_loss"])
                if best is None or key > best:
                    best, best_epoch = key, epoch
                    best_state = copy.deepcopy(head.state_dict())
            history.append(row)
            if progress:
                bar.write(_epoch_line(row, config.epochs), file=sys.stderr)
    finally:
        bar.close()
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return TrainedHead(head, standardizer, config, history, best_epoch)


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    line = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}"
    if "val_uar" in row:
        line += (
            f"  val loss {row['val_loss']:.4f}  val UAR {row['val_uar']:.3f}"
            f"  val acc {row['val_accuracy']:.3f}"
        )
    return line
