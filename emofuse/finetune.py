"""End-to-end fine-tuning (`emofuse train --finetune`): the Hugging Face speech and/or
text encoder trained together with the same :class:`~emofuse.model.FusionHead`.

For users with GPUs. It runs through Hugging Face Accelerate, so one script covers CPU,
one GPU and several (``accelerate launch --num_processes N -m emofuse train ...
--finetune``), with optional fp16/bf16 mixed precision. Encoder vectors are the last
layer mean-pooled over valid frames / tokens, exactly what the feature encoders
``<dir>?pooling=mean`` compute, so the result is saved as an ordinary bundle whose
encoders are the fine-tuned checkpoints stored inside it.
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

from emofuse.metrics import compute_metrics, unweighted_average_recall
from emofuse.model import FusionHead, Standardizer, modalities_of
from emofuse.train import TrainConfig, TrainedHead

SAMPLE_RATE_HZ = 16_000


class FinetuneError(ValueError):
    """A fine-tuning request that cannot run; the message says why."""


@dataclass
class FinetuneConfig:
    """Fine-tuning knobs; head settings mirror :class:`~emofuse.train.TrainConfig`."""

    batch_size: int = field(default=8, metadata={"help": "clips per step (per process)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training set"})
    lr: float = field(default=1e-3, metadata={"help": "head learning rate"})
    encoder_lr: float = field(default=2e-5, metadata={"help": "encoder learning rate"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    hidden: int = field(default=256, metadata={"help": "hidden width of the head"})
    dropout: float = field(default=0.2, metadata={"help": "dropout in the head"})
    seed: int = field(default=0, metadata={"help": "seed"})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps per update"})
    max_audio_s: float = field(default=8.0, metadata={"help": "clips are cropped to this"})
    max_text_tokens: int = field(default=128, metadata={"help": "texts are cut to this"})
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "keep wav2vec2's convolutional front end fixed"}
    )
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps"})
    cpu: bool = field(default=False, metadata={"help": "force CPU even with a GPU"})

    @classmethod
    def from_train_config(cls, config: TrainConfig, **overrides: Any) -> FinetuneConfig:
        shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
        shared.pop("class_weighting", None)
        return cls(**{**shared, **overrides})

    def head_config(self) -> TrainConfig:
        return TrainConfig(
            batch_size=self.batch_size, epochs=self.epochs, lr=self.lr,
            weight_decay=self.weight_decay, hidden=self.hidden, dropout=self.dropout,
            seed=self.seed,
        )  # fmt: skip


def _model_dir(spec: str, modality: str) -> str:
    """The checkpoint a spec names (hub name or directory), without encoder options."""
    from emofuse.encoders.registry import parse_part

    parts = [p for p in spec.split("+") if p.strip()]
    if len(parts) != 1:
        raise FinetuneError(
            f"--finetune takes one {modality} model, not a concatenation ({spec!r})"
        )
    name, options = parse_part(parts[0])
    if name in ("egemaps", "resemblyzer", "kiwi-tfidf"):
        raise FinetuneError(
            f"--finetune needs a Hugging Face {modality} model (hub name or directory), "
            f"not {name!r}; e.g. --{modality} {'facebook/wav2vec2-large-robust' if modality == 'speech' else 'beomi/KcELECTRA-base-v2022'}"
        )
    if options:
        raise FinetuneError(
            f"--finetune uses the last layer, mean-pooled: drop the options in {spec!r}"
        )
    return name.removeprefix("hf:")


class FinetuneModel(nn.Module):
    """Speech and/or text transformer -> mean-pooled last layer -> [A; T] -> FusionHead."""

    def __init__(
        self, speech_dir: str | None, text_dir: str | None, n_classes: int, config: FinetuneConfig
    ):
        super().__init__()
        from transformers import AutoModel

        self.speech = AutoModel.from_pretrained(speech_dir) if speech_dir else None
        self.text = AutoModel.from_pretrained(text_dir) if text_dir else None
        if self.speech is not None and config.freeze_feature_encoder:
            freeze = getattr(self.speech, "freeze_feature_encoder", None)
            if freeze is not None:
                freeze()
        dims = {}
        if self.speech is not None:
            dims["speech"] = int(self.speech.config.hidden_size)
        if self.text is not None:
            dims["text"] = int(self.text.config.hidden_size)
        self.head = FusionHead(
            sum(dims.values()), n_classes, config.hidden, config.dropout, input_dims=dims
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = []
        if self.speech is not None:
            kwargs = {"attention_mask": batch["audio_mask"]} if "audio_mask" in batch else {}
            hidden = self.speech(batch["input_values"], **kwargs).last_hidden_state
            frames = self.speech._get_feat_extract_output_lengths(batch["audio_lengths"])
            steps = torch.arange(hidden.shape[1], device=hidden.device)
            vectors.append(_mean_pool(hidden, steps[None, :] < frames[:, None]))
        if self.text is not None:
            hidden = self.text(
                input_ids=batch["input_ids"], attention_mask=batch["text_mask"]
            ).last_hidden_state
            vectors.append(_mean_pool(hidden, batch["text_mask"].bool()))
        return self.head(torch.cat(vectors, dim=1))


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class _Clips(torch.utils.data.Dataset):
    def __init__(self, table: pd.DataFrame, y: np.ndarray, use_audio: bool, max_audio_s: float):
        self.audio = table["audio"].astype(str).tolist() if use_audio else None
        self.texts = table["text"].fillna("").astype(str).tolist()
        self.y = y
        self.max_audio_s = max_audio_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from emofuse.audio import load_audio

        item = {"label": int(self.y[i]), "text": self.texts[i]}
        if self.audio is not None:
            item["wave"] = load_audio(
                self.audio[i], SAMPLE_RATE_HZ, max_duration_s=self.max_audio_s
            )
        return item


class _Collate:
    def __init__(self, speech_dir: str | None, text_dir: str | None, max_text_tokens: int):
        from transformers import AutoFeatureExtractor, AutoTokenizer

        self.extractor = AutoFeatureExtractor.from_pretrained(speech_dir) if speech_dir else None
        self.tokenizer = AutoTokenizer.from_pretrained(text_dir) if text_dir else None
        self.max_text_tokens = max_text_tokens

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"labels": torch.tensor([it["label"] for it in items])}
        if self.extractor is not None:
            waves = [it["wave"] for it in items]
            wants_mask = bool(getattr(self.extractor, "return_attention_mask", False))
            out = self.extractor(
                waves, sampling_rate=SAMPLE_RATE_HZ, padding=True, return_tensors="pt",
                return_attention_mask=wants_mask,
            )  # fmt: skip
            batch["input_values"] = out["input_values"]
            if wants_mask:
                batch["audio_mask"] = out["attention_mask"]
            batch["audio_lengths"] = torch.tensor([len(w) for w in waves])
        if self.tokenizer is not None:
            out = self.tokenizer(
                [it["text"] for it in items], padding=True, truncation=True,
                max_length=self.max_text_tokens, return_tensors="pt",
            )  # fmt: skip
            batch["input_ids"], batch["text_mask"] = out["input_ids"], out["attention_mask"]
        return batch


def _usable_audio(table: pd.DataFrame) -> np.ndarray:
    """Header check of every clip (cheap), so a broken file is dropped up front rather
    than stopping a multi-process run mid-epoch."""
    from emofuse.audio import AudioError, audio_info

    ok = np.ones(len(table), dtype=bool)
    for i, path in enumerate(table["audio"].astype(str)):
        try:
            audio_info(path)
        except AudioError:
            ok[i] = False
    return ok


@dataclass
class FinetuneResult:
    bundle_dir: Path | None
    metrics: dict | None
    val_metrics: dict | None
    history: list[dict[str, float]]
    best_epoch: int
    dropped: list[str] = field(default_factory=list)
    model: FinetuneModel | None = None  # the fine-tuned model (best epoch), unwrapped
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
    """Fine-tune on ``part == 'train'``, keep the best epoch on ``val`` (UAR), score
    ``test`` and (main process) save a bundle with the fine-tuned encoders inside."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config = config or FinetuneConfig()
    labels = list(labels)
    needed = modalities_of(modality)
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

    # Without CUDA, `accelerate launch --multi_gpu` still starts N ranks; cpu=True makes
    # them join one gloo process group instead of each believing it is alone.
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=config.cpu or not torch.cuda.is_available(),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )  # fmt: skip
    set_seed(config.seed)
    table = table.reset_index(drop=True)
    dropped: list[str] = []
    if speech_dir is not None:
        ok = _usable_audio(table)
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
    collate = _Collate(speech_dir, text_dir, config.max_text_tokens)

    def loader(name: str, shuffle: bool):
        rows = part == name
        if not rows.any():
            return None
        data = _Clips(table[rows], y[rows], speech_dir is not None, config.max_audio_s)
        generator = torch.Generator().manual_seed(config.seed)
        return torch.utils.data.DataLoader(
            data, batch_size=config.batch_size, shuffle=shuffle, collate_fn=collate,
            generator=generator,
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

    history: list[dict[str, float]] = []
    best_key, best_state, best_epoch = None, None, config.epochs
    steps, total_steps = 0, config.epochs * len(train_loader)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    bar = tqdm(
        total=total_steps,
        desc="fine-tuning",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    for epoch in range(1, config.epochs + 1):
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
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan}
        if val_loader is not None:
            pred, true, val_loss = _evaluate(accelerator, model, val_loader)
            row.update(
                val_loss=val_loss,
                val_uar=unweighted_average_recall(true, pred, len(labels)),
                val_accuracy=float((pred == true).mean()),
            )
            key = (row["val_uar"], -val_loss)
            if best_key is None or key > best_key:
                best_key, best_epoch = key, epoch
                best_state = copy.deepcopy(accelerator.unwrap_model(model).state_dict())
        history.append(row)
        if progress and accelerator.is_main_process:
            bar.write(
                f"epoch {epoch}/{config.epochs}  train loss {row['train_loss']:.4f}"
                + (f"  val UAR {row['val_uar']:.3f}" if "val_uar" in row else ""),
                file=sys.stderr,
            )
        if config.max_steps and steps >= config.max_steps:
            best_epoch = epoch if best_state is None else best_epoch
            break
    bar.close()
    if best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(best_state)

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
            copy.deepcopy(model.head).cpu(), standardizer, config.head_config(), history, best_epoch
        )
        record = dict(provenance or {})
        record["finetune"] = dataclasses.asdict(config)
        record.setdefault("train_ids", train_rows["id"].astype(str).tolist())
        return save_bundle(
            out_dir, trained, labels=labels, modality=modality, encoders=encoders,
            metrics=metrics, provenance=record, embed_models=embed,
        )  # fmt: skip
