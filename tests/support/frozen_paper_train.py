"""A frozen copy of emofuse.head.train's head training as published (git 01ab599), before the
shared training loop and the recipes: the `paper` recipe must reproduce it exactly.
Do not edit: it is the reference, not the code under test."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from emofuse.head.model import FusionHead, Standardizer
from emofuse.metrics import unweighted_average_recall


def frozen_fit_head(x_train, y_train, x_val, y_val, n_classes, config):
    """The published fit_head (float32 inputs, validation optional), no progress bar."""
    x_train = np.ascontiguousarray(np.asarray(x_train, dtype=np.float32))
    y_train = np.asarray(y_train).astype(np.int64)
    val = None
    if x_val is not None:
        val = (np.ascontiguousarray(np.asarray(x_val, dtype=np.float32)),
               np.asarray(y_val).astype(np.int64))  # fmt: skip
    input_dims = {"speech": x_train.shape[1]}
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _train(x_train, y_train, val, n_classes, config, input_dims, False)
    finally:
        torch.use_deterministic_algorithms(previous)


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _train(x_train, y_train, val, n_classes, config, input_dims, progress):
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

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state, best_epoch = None, config.epochs
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
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return head, standardizer, history, best_epoch
