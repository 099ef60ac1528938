"""Training the fusion head on fixed feature vectors: standardise, then AdamW, as the
recipe says. Seeded runs on CPU repeat exactly (training runs on one torch thread).

The epoch loop itself (:func:`run_epochs`: the best-epoch rule, early stopping, the
per-epoch log line) and the seeding (:func:`seeded`) are shared with end-to-end
fine-tuning (:mod:`emofuse.finetune.run`), so both pick their epoch the same way.

Two recipes (``TrainConfig.recipe``; values in :mod:`emofuse.head.config`):
- ``paper``: the published setting, exactly: ``epochs`` passes on train; with a val part
  the epoch with the best val UAR is kept (ties: lower val loss), without one the last.
- ``small-data`` (default): an MLP with a linear shortcut, strong weight decay and
  dropout, a class-weighted loss, Gaussian noise on the standardised inputs, and a budget
  of at least ``min_steps`` optimiser steps however few clips there are; the last epoch is
  kept (val is only watched), unless ``patience`` > 0 (early stopping on val UAR, the best
  epoch kept). Then an exact logistic regression on the same rows is averaged into its
  logits (``logistic_blend``, :func:`_blend_logistic`: the MLP wins with few clips, the
  linear model with more, the average at every size measured). With a val part, a
  temperature may be fitted on val (``calibrate``, off by default), then ``refit`` (on by
  default): the same training on train + val, which becomes the model (it keeps the
  history, chosen epoch and temperature of the run that could still be checked on val).

Each fit is announced in one line and shows its epochs as a bar; the per-epoch lines
only with ``verbose`` (:mod:`emofuse.head.training_log`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from emofuse.head.config import (
    TrainConfig as TrainConfig,  # re-exported: emofuse.head.train.TrainConfig
)
from emofuse.head.config import train_config_problems as train_config_problems
from emofuse.head.model import FusionHead, Standardizer
from emofuse.head.score import probabilities_from_features
from emofuse.head.training_log import TrainingLog, fit_on_train_line
from emofuse.metrics import unweighted_average_recall
from emofuse.torch_threads import one_thread

# ----------------------------------------------------------------- the shared loop


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for one training run and turn on deterministic algorithms (warn only),
    leaving the caller's global RNG state and determinism setting as they were."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        # fork_rng keeps the caller's global RNG untouched while dropout draws from it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(previous)


def validation_scores(
    y_true: np.ndarray, y_pred: np.ndarray, loss: float, n_classes: int
) -> dict[str, float]:
    """The per-epoch validation entries of a history row."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "val_loss": float(loss),
        "val_uar": unweighted_average_recall(y_true, y_pred, n_classes),
        "val_accuracy": float((y_pred == y_true).mean()),
    }


class BestEpoch:
    """The best-epoch rule: the highest validation UAR; ties go to the lower validation
    loss, then to the earlier epoch. Counts the epochs since the last improvement."""

    def __init__(self) -> None:
        self.key: tuple[float, float] | None = None
        self.epoch: int | None = None
        self.state: dict | None = None
        self.since = 0

    def offer(self, epoch: int, row: Mapping[str, float], snapshot: Callable[[], dict]) -> bool:
        key = (row["val_uar"], -row["val_loss"])
        if self.key is None or key > self.key:
            self.key, self.epoch, self.state, self.since = key, epoch, snapshot(), 0
            return True
        self.since += 1
        return False


@dataclass
class LoopResult:
    history: list[dict[str, float]]
    best_epoch: int  # 1-based; the last epoch run when there was no validation
    best_state: dict | None  # snapshot of the best epoch (None without validation)


def run_epochs(
    epochs: int,
    train_epoch: Callable[[int], float],
    *,
    n_classes: int,
    validate: Callable[[], tuple[np.ndarray, np.ndarray, float]] | None = None,
    snapshot: Callable[[], dict] | None = None,
    patience: int = 0,
    stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> LoopResult:
    """The epoch loop of head training and fine-tuning.

    ``train_epoch(epoch)`` runs one pass and returns its training loss; ``validate()``
    returns ``(y_true, y_pred, loss)`` on the validation part; ``snapshot()`` copies the
    weights kept for the best epoch (:class:`BestEpoch`). With ``patience`` > 0 training
    stops after that many epochs without improvement; ``stop()`` (checked after every
    epoch) ends it early too, e.g. at a step budget. ``log`` receives one line per epoch.
    """
    if validate is not None and snapshot is None:
        raise ValueError("run_epochs: validate needs snapshot (the weights to keep)")
    best = BestEpoch()
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        row: dict[str, float] = {"epoch": epoch, "train_loss": float(train_epoch(epoch))}
        if validate is not None:
            y_true, y_pred, loss = validate()
            row.update(validation_scores(y_true, y_pred, loss, n_classes))
            best.offer(epoch, row, snapshot)
        history.append(row)
        if log is not None:
            log(epoch_line(row, epochs))
        if stop is not None and stop():
            break
        if validate is not None and patience and best.since >= patience:
            break
    best_epoch = best.epoch if best.epoch is not None else len(history)
    return LoopResult(history, best_epoch, best.state)


def epoch_line(row: Mapping[str, float], epochs: int) -> str:
    """The per-epoch log line."""
    line = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f}"
    if "val_uar" in row:
        line += (
            f"  val loss {row['val_loss']:.4f}  val UAR {row['val_uar']:.3f}"
            f"  val acc {row['val_accuracy']:.3f}"
        )
    return line


# ------------------------------------------------------------------ the head


@dataclass
class TrainedHead:
    """A fitted standardiser + head, and how training went."""

    head: FusionHead
    standardizer: Standardizer
    config: TrainConfig
    history: list[dict[str, float]]
    best_epoch: int  # 1-based
    #: logits are divided by it before the softmax (1.0: uncalibrated; see calibration.py)
    temperature: float = 1.0
    #: speaker-adaptive normalisation applied to rows before the head
    #: (:class:`~emofuse.head.speaker_norm.SpeakerNorm`; None: none, see head/recipe.py)
    speaker_norm: Any = None
    #: model selection record (candidates, CV scores, the choice; head/selection.py)
    selection: dict | None = None

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

    def predict_proba(self, x: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Class probabilities, shape (n, n_classes) (temperature-scaled when fitted), from
        the stacked matrix or ``{modality: vectors}``: through
        :func:`emofuse.head.score.probabilities_from_features`, the one scoring path."""
        return probabilities_from_features(self, x)

    def predict(self, x: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Class indices (the most probable class of :meth:`predict_proba`)."""
        return self.predict_proba(x).argmax(axis=1)

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
    from emofuse.head.logistic import class_balance

    return torch.tensor(class_balance(y, n_classes, k=n_classes), dtype=torch.float32)


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
    verbose: bool = False,
    log: TrainingLog | None = None,
) -> TrainedHead:
    """Train a :class:`FusionHead` on feature rows (speech columns first, then text).

    ``input_dims`` ({"speech": d_a, "text": d_t}) records which modality each column
    block holds; default: all columns are speech. ``config.recipe`` says what the
    validation rows are for (module docstring): ``paper`` keeps the epoch with the best
    validation UAR (ties: lower validation loss; without validation rows, the last
    epoch); ``small-data`` keeps the last epoch (``patience`` > 0: the best), blends a
    logistic regression in and, by default, retrains on train + validation rows. The
    returned head records the config with the recipe's values filled in
    (:meth:`TrainConfig.resolved`).

    ``progress``: one line per fit (what, on which rows, what for) and its epochs as a
    bar on a terminal; ``verbose``: one line per epoch as well; ``log`` (a
    :class:`~emofuse.head.training_log.TrainingLog`) overrides both.
    """
    log = log or TrainingLog(progress=progress, verbose=verbose)
    config = (config or TrainConfig()).resolved()
    x_train = _as_matrix(X_train, "X_train")
    y_train = _as_labels(y_train, len(x_train), n_classes, "y_train")
    if len(x_train) == 0:
        raise ValueError("no training rows")
    val = None
    if X_val is not None and len(X_val) > 0:
        x_val = _as_matrix(X_val, "X_val", x_train.shape[1])
        val = (x_val, _as_labels(y_val, len(x_val), n_classes, "y_val"))
    input_dims = dict(input_dims) if input_dims else {"speech": x_train.shape[1]}

    with seeded(config.seed), one_thread():
        if config.recipe == "paper":
            n_val = len(val[1]) if val is not None else None
            log.phase(fit_on_train_line(log, config, len(x_train), n_val, config.epochs))
            return _train(x_train, y_train, val, n_classes, config, input_dims, log)
        return _train_small_data(x_train, y_train, val, n_classes, config, input_dims, log)


def _budget(n_rows: int, config: TrainConfig) -> int:
    """Epochs of the small-data recipe: ``epochs``, or more to reach ``min_steps``."""
    return max(config.epochs, math.ceil(config.min_steps / math.ceil(n_rows / config.batch_size)))


def _blend_logistic(trained: TrainedHead, x: np.ndarray, y: np.ndarray) -> TrainedHead:
    """Average an exact logistic regression (:mod:`emofuse.head.logistic`, fitted on ``x, y``
    through the head's standardiser) into the head's logits with weight
    ``config.logistic_blend``. Both are linear in the last layer, so the average is
    folded into the head's own weights: ``(1 - w) * head(x) + w * (W x + b)`` becomes a
    scaled last layer plus the linear part, and the bundle format does not change. It
    changes the head in place, once, right after training (a second call would blend
    again). The temperature (``calibrate``) is fitted on the blended train-only model and
    kept for the refit; with ``patience`` the epoch is chosen on the MLP before the blend."""
    from emofuse.head.logistic import fit_logistic

    w, head = trained.config.logistic_blend, trained.head
    if not w:
        return trained
    if head.kind == "mlp":
        raise ValueError("logistic_blend needs a head with a linear part, not mlp")
    with torch.no_grad():
        xs = trained.standardizer(torch.from_numpy(x)).numpy()
    weight, bias = fit_logistic(
        xs, y, head.n_classes, c=trained.config.logistic_c,
        balanced=trained.config.class_weighting,
    )  # fmt: skip
    linear = head.skip if head.kind == "mlp+linear" else head.fc2
    with torch.no_grad():
        if head.kind == "mlp+linear":
            head.fc2.weight.mul_(1 - w)
            head.fc2.bias.mul_(1 - w)
        linear.weight.mul_(1 - w).add_(w * torch.from_numpy(weight).float())
        linear.bias.mul_(1 - w).add_(w * torch.from_numpy(bias).float())
    return trained


def _train_small_data(x_train, y_train, val, n_classes, config, input_dims, log):
    epochs = _budget(len(x_train), config)
    n_val = len(val[1]) if val is not None else None
    log.phase(fit_on_train_line(log, config, len(x_train), n_val, epochs))
    trained = _train(
        x_train, y_train, val, n_classes, config, input_dims, log,
        epochs=epochs, patience=config.patience,
        noise=config.input_noise, keep_best=config.patience > 0,
    )  # fmt: skip
    trained = _blend_logistic(trained, x_train, y_train)
    if val is None:
        return trained
    if config.calibrate:
        from emofuse.head.calibration import fit_temperature

        trained.temperature = fit_temperature(trained.logits(val[0]), val[1])
        log.phase(
            f"calibration: temperature {trained.temperature:.3g} fitted on val "
            f"({log.rows(len(val[1]))}), so that confidences match accuracy"
        )
    if not config.refit:
        return trained
    # The same training again on train + val (its own standardiser), for the chosen
    # number of epochs (patience) or the step budget; history and temperature are those
    # of the run that could still be checked on val.
    torch.manual_seed(config.seed)
    x_all = np.concatenate([x_train, val[0]])
    epochs = trained.best_epoch if config.patience > 0 else _budget(len(x_all), config)
    log.phase(f"refit on train + val: {log.rows(len(x_all))}, {epochs} epochs: the model saved")
    refit = _train(
        x_all, np.concatenate([y_train, val[1]]), None, n_classes, config, input_dims,
        log, epochs=epochs, noise=config.input_noise, desc="refit on train + val",
    )  # fmt: skip
    refit = _blend_logistic(refit, x_all, np.concatenate([y_train, val[1]]))
    return replace(
        refit, history=trained.history, best_epoch=trained.best_epoch,
        temperature=trained.temperature,
    )  # fmt: skip


def _train(
    x_train, y_train, val, n_classes, config, input_dims, log: TrainingLog, *,
    epochs: int | None = None, patience: int = 0, noise: float = 0.0, keep_best: bool = True,
    desc: str = "fit on train",
) -> TrainedHead:  # fmt: skip
    epochs = config.epochs if epochs is None else epochs
    standardizer = Standardizer.fit(x_train, clip=config.recipe != "paper")
    head = FusionHead(
        x_train.shape[1], n_classes, config.hidden, config.dropout, input_dims=input_dims,
        kind=config.head,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weight = _class_weights(y_train, n_classes) if config.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    eval_loss_fn = nn.CrossEntropyLoss(weight=weight)
    xs = standardizer(torch.from_numpy(x_train))
    ys = torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(config.seed)

    def train_epoch(epoch: int) -> float:
        head.train()
        order = torch.randperm(len(xs), generator=generator)
        total = 0.0
        for start in range(0, len(xs), config.batch_size):
            idx = order[start : start + config.batch_size]
            inputs = xs[idx]
            if noise:
                inputs = inputs + noise * torch.randn(inputs.shape, generator=generator)
            optimizer.zero_grad()
            loss = loss_fn(head(inputs), ys[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        return total / len(xs)

    validate = None
    if val is not None:
        xv = standardizer(torch.from_numpy(val[0]))
        yv = torch.from_numpy(val[1])

        def validate() -> tuple[np.ndarray, np.ndarray, float]:
            head.eval()
            with torch.no_grad():
                logits = head(xv)
            return yv.numpy(), logits.argmax(dim=1).numpy(), float(eval_loss_fn(logits, yv))

    with log.epochs(epochs, desc) as epoch_done:
        result = run_epochs(
            epochs, train_epoch, n_classes=n_classes, validate=validate,
            snapshot=lambda: copy.deepcopy(head.state_dict()), patience=patience, log=epoch_done,
        )  # fmt: skip
    best_epoch = result.best_epoch
    if keep_best and result.best_state is not None:
        head.load_state_dict(result.best_state)
    elif not keep_best:
        best_epoch = len(result.history)  # the weights kept are the last epoch's
    head.eval()
    return TrainedHead(head, standardizer, config, result.history, best_epoch)
