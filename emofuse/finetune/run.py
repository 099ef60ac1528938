"""End-to-end fine-tuning (`emofuse train --finetune`): the Hugging Face speech and/or
text encoder trained together with the same :class:`~emofuse.head.model.FusionHead`
(:class:`~emofuse.finetune.model.FinetuneModel`), on batches of clips
(:mod:`emofuse.finetune.batches`).

For users with GPUs. It runs through Hugging Face Accelerate, so one script covers CPU,
one GPU and several (``accelerate launch --num_processes N -m emofuse train ...
--finetune``), in bfloat16 mixed precision by default on a CUDA GPU that has it
(``--mixed-precision``: auto, no, fp16, bf16).

Fine-tuning has no recipes (the head's ``small-data`` recipe, with its step budget,
noise, logistic blend and refit, is for fixed feature vectors): it runs ``epochs`` passes
(or ``max_steps``) through the epoch loop it shares with head training
(:func:`emofuse.head.train.run_epochs`) and, with a val part, keeps the epoch with the
best val UAR, the ``paper`` recipe's rule; without one, the last epoch. The result is
saved as an ordinary bundle whose encoders are the fine-tuned checkpoints stored inside it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emofuse.finetune.batches import (
    Clips,
    Collate,
    LengthGroupedOrder,
    item_lengths,
    start_loader_worker,
    usable_audio,
)
from emofuse.finetune.config import FinetuneConfig
from emofuse.finetune.model import FinetuneModel
from emofuse.head.model import Standardizer
from emofuse.head.train import TrainedHead, run_epochs, seeded
from emofuse.metrics import compute_metrics
from emofuse.modalities import inputs_of
from emofuse.workers import auto_loader_workers


class FinetuneError(ValueError):
    """A fine-tuning request that cannot run; the message says why."""


def _model_dir(spec: str, modality: str) -> str:
    """The checkpoint a spec names (hub name or directory), without encoder options."""
    from emofuse.encoders.registry import is_registered, parse_part

    parts = [p for p in spec.split("+") if p.strip()]
    if len(parts) != 1:
        raise FinetuneError(
            f"--finetune takes one {modality} model, not a concatenation ({spec!r})"
        )
    name, options = parse_part(parts[0])
    if is_registered(modality, name):  # egemaps, resemblyzer, kiwi-*, plug-ins: not HF
        raise FinetuneError(
            f"--finetune needs a Hugging Face {modality} model (hub name or directory), "
            f"not {name!r}; e.g. --{modality} {'facebook/wav2vec2-large-robust' if modality == 'speech' else 'beomi/KcELECTRA-base-v2022'}"
        )
    if options:
        raise FinetuneError(
            f"--finetune uses the last layer, mean-pooled: drop the options in {spec!r}"
        )
    return name.removeprefix("hf:")


@dataclass
class FinetuneResult:
    bundle_dir: Path | None
    metrics: dict | None
    val_metrics: dict | None
    history: list[dict[str, float]]
    best_epoch: int
    dropped: list[str] = field(default_factory=list)
    model: FinetuneModel | None = None  # the fine-tuned model (the epoch kept), unwrapped
    collate: Any = None  # turns [{"wave", "text", "label"}] into a model batch


def _evaluate(accelerator, model, loader) -> tuple[np.ndarray, np.ndarray, float]:
    model.eval()
    preds, labels, losses = [], [], []
    with torch.no_grad():
        for batch in loader:
            logits = model(batch)
            loss = nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
            p, y, loss = accelerator.gather_for_metrics((logits.argmax(1), batch["labels"], loss))
            preds.append(p.cpu())
            labels.append(y.cpu())
            losses.append(loss.float().cpu())
    return torch.cat(preds).numpy(), torch.cat(labels).numpy(), float(torch.cat(losses).mean())


def finetune_and_evaluate(
    table: pd.DataFrame,
    labels: Sequence[str],
    *,
    modality: str,
    speech: str | None = None,
    text: str | None = None,
    config: FinetuneConfig | None = None,
    out_dir: str | Path | None = None,
    provenance: dict | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune on ``part == 'train'`` for ``config.epochs`` passes (or ``max_steps``);
    with a ``val`` part keep the epoch with the best val UAR (ties: lower val loss),
    without one the last epoch; score ``test`` and (main process) save a bundle with the
    fine-tuned encoders inside."""
    config = config or FinetuneConfig()
    labels = list(labels)
    needed = inputs_of(modality)
    speech_dir = _model_dir(speech, "speech") if "speech" in needed and speech else None
    text_dir = _model_dir(text, "text") if "text" in needed and text else None
    if ("speech" in needed) != (speech_dir is not None) or ("text" in needed) != (
        text_dir is not None
    ):
        raise FinetuneError(
            f"modality {modality!r} needs " + " and ".join(f"--{m} MODEL" for m in needed)
        )
    if "part" not in table.columns:
        raise FinetuneError("the table has no 'part' column: split it first (`emofuse split`)")
    unknown = sorted(set(table["label"].astype(str)) - set(labels))
    if unknown:
        raise FinetuneError(f"labels {unknown} are not in the class list {labels}")
    with seeded(config.seed):  # the head's seeding: same init, shuffles and dropout
        return _finetune(
            table, labels, modality, speech_dir, text_dir, config, out_dir, provenance, progress
        )


def _finetune(
    table, labels, modality, speech_dir, text_dir, config, out_dir, provenance, progress
) -> FinetuneResult:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cuda = torch.cuda.is_available()
    config = config.resolved(cuda, cuda and torch.cuda.is_bf16_supported(including_emulation=False))
    # Without CUDA, `accelerate launch --multi_gpu` still starts N ranks; cpu=True makes
    # them join one gloo process group instead of each believing it is alone.
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=config.cpu or not cuda,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )  # fmt: skip
    table = table.reset_index(drop=True)
    dropped: list[str] = []
    if speech_dir is not None:
        ok = usable_audio(table)
        dropped = table.loc[~ok, "id"].astype(str).tolist()
        if dropped and accelerator.is_main_process:
            print(
                f"dropped {len(dropped)} clips with unreadable audio, e.g. {dropped[:3]}",
                file=sys.stderr,
            )
        table = table[ok].reset_index(drop=True)
    y = table["label"].astype(str).map({label: i for i, label in enumerate(labels)}).to_numpy()
    part = table["part"].astype(str).to_numpy()
    if not (part == "train").any():
        raise FinetuneError("no rows with part == 'train'")

    model = FinetuneModel(speech_dir, text_dir, len(labels), config)
    collate = Collate(speech_dir, text_dir, config.max_text_tokens, config.max_audio_s)

    workers = config.loader_workers
    if workers is None:
        workers = auto_loader_workers(accelerator.device.type, accelerator.num_processes)

    def loader(name: str, shuffle: bool):
        rows = part == name
        if not rows.any():
            return None
        hears = speech_dir is not None
        data = Clips(table[rows], y[rows], hears, config.max_audio_s)
        if config.group_by_length:
            lengths = item_lengths(table[rows], hears, config.max_audio_s)
            order = {"sampler": LengthGroupedOrder(
                lengths, config.batch_size, seed=config.seed, shuffle=shuffle)}  # fmt: skip
        else:
            order = {"shuffle": shuffle, "generator": torch.Generator().manual_seed(config.seed)}
        # Batches read and padded by `workers` processes beside the model, a few ahead, in
        # page-locked memory on CUDA; none on a CPU (the model uses every core).
        return torch.utils.data.DataLoader(
            data, batch_size=config.batch_size, collate_fn=collate, num_workers=workers,
            pin_memory=accelerator.device.type == "cuda", persistent_workers=False,
            prefetch_factor=2 if workers else None, worker_init_fn=start_loader_worker, **order,
        )  # fmt: skip

    train_loader, val_loader, test_loader = (
        loader("train", True),
        loader("val", False),
        loader("test", False),
    )
    encoder_params = [
        p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad
    ]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": config.encoder_lr},
            {"params": list(model.head.parameters()), "lr": config.lr},
        ],
        weight_decay=config.weight_decay,
    )
    prepared = accelerator.prepare(
        model, optimizer, train_loader, *[d for d in (val_loader, test_loader) if d]
    )
    model, optimizer, train_loader = prepared[:3]
    rest = list(prepared[3:])
    val_loader = rest.pop(0) if val_loader is not None else None
    test_loader = rest.pop(0) if test_loader is not None else None

    steps, total_steps = 0, config.epochs * len(train_loader)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    bar = tqdm(
        total=total_steps,
        desc="fine-tuning",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )

    def train_epoch(epoch: int) -> float:
        nonlocal steps
        model.train()
        losses = []
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = nn.functional.cross_entropy(model(batch), batch["labels"])
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(float(loss.detach()))
            steps += 1
            bar.update(1)
            if config.max_steps and steps >= config.max_steps:
                break
        return float(np.mean(losses)) if losses else math.nan

    def validate() -> tuple[np.ndarray, np.ndarray, float]:
        pred, true, loss = _evaluate(accelerator, model, val_loader)
        return true, pred, loss

    try:
        loop = run_epochs(
            config.epochs, train_epoch, n_classes=len(labels),
            validate=validate if val_loader is not None else None,
            snapshot=lambda: copy.deepcopy(accelerator.unwrap_model(model).state_dict()),
            stop=lambda: bool(config.max_steps) and steps >= config.max_steps,
            log=(lambda line: bar.write(line, file=sys.stderr))
            if progress and accelerator.is_main_process else None,
        )  # fmt: skip
    finally:
        bar.close()
    history, best_epoch = loop.history, loop.best_epoch
    if loop.best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(loop.best_state)

    val_metrics = metrics = None
    if val_loader is not None:
        pred, true, _ = _evaluate(accelerator, model, val_loader)
        val_metrics = compute_metrics(true, pred, labels)
    if test_loader is not None:
        pred, true, _ = _evaluate(accelerator, model, test_loader)
        metrics = compute_metrics(true, pred, labels)

    bundle_dir = None
    if out_dir is not None and accelerator.is_main_process:
        bundle_dir = _save(
            accelerator.unwrap_model(model), collate, labels, modality, config, history,
            best_epoch, metrics, provenance, table[part == "train"], Path(out_dir),
        )  # fmt: skip
    accelerator.wait_for_everyone()
    return FinetuneResult(
        Path(out_dir) if out_dir is not None else bundle_dir, metrics, val_metrics, history,
        best_epoch, dropped, accelerator.unwrap_model(model), collate,
    )  # fmt: skip


def _save(
    model,
    collate,
    labels,
    modality,
    config,
    history,
    best_epoch,
    metrics,
    provenance,
    train_rows,
    out_dir,
):
    """Save the fine-tuned checkpoints, wrap them as feature encoders, and write a bundle
    whose head is the fine-tuned head (with an identity standardiser)."""
    from emofuse.bundle import save_bundle
    from emofuse.encoders.registry import build_encoder

    model = copy.deepcopy(model).float().eval()
    with tempfile.TemporaryDirectory(prefix="emofuse-finetune-") as scratch:
        encoders, embed = {}, {}
        for m, body, processor in (
            ("speech", model.speech, collate.extractor),
            ("text", model.text, collate.tokenizer),
        ):
            if body is None:
                continue
            directory = Path(scratch) / "encoders" / m / "model"
            body.save_pretrained(directory)
            processor.save_pretrained(directory)
            spec = f"{directory}?pooling=mean"
            if m == "text":
                spec += f"&max_length={config.max_text_tokens}"
            else:
                spec += f"&long=crop&max_duration_s={config.max_audio_s}"
            encoders[m] = build_encoder(spec, m)
            embed[m] = directory
        standardizer = Standardizer(model.head.input_dim)  # identity: mean 0, std 1
        trained = TrainedHead(
            copy.deepcopy(model.head).cpu(),
            standardizer,
            dataclasses.replace(config.head_config(), recipe="paper").resolved(),
            history,
            best_epoch,
        )
        record = dict(provenance or {})
        record["finetune"] = dataclasses.asdict(config)
        record.setdefault("train_ids", train_rows["id"].astype(str).tolist())
        return save_bundle(
            out_dir, trained, labels=labels, modality=modality, encoders=encoders,
            metrics=metrics, provenance=record, embed_models=embed,
        )  # fmt: skip
