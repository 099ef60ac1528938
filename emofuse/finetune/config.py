"""The settings of end-to-end fine-tuning (`emofuse train --finetune`), kept apart from
torch so that the CLI can build its flags (and check them) without importing it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emofuse.head.config import TrainConfig

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
BAD_HEAD_PREFIX = "bad training config: "


@dataclass
class FinetuneConfig:
    """Every knob of fine-tuning; the CLI builds the ``--finetune`` flags from these fields."""

    batch_size: int = field(default=8, metadata={"help": "clips per step (per process)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training set"})
    lr: float = field(default=1e-3, metadata={"help": "head learning rate"})
    encoder_lr: float = field(default=2e-5, metadata={"help": "encoder learning rate"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    hidden: int = field(default=256, metadata={"help": "hidden width of the head"})
    dropout: float = field(default=0.2, metadata={"help": "dropout in the head"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and shuffling"})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "fp16 or bf16 on a GPU (auto: bf16 on a CUDA GPU that has it, "
                  "else none)", "choices": MIXED_PRECISION},
    )  # fmt: skip
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "batches per optimiser update"}
    )
    max_audio_s: float = field(default=8.0, metadata={"help": "clips are cropped to this"})
    max_text_tokens: int = field(default=128, metadata={"help": "texts are cut to this"})
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "keep wav2vec2's convolutional front end fixed"}
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "stop after this many steps (none: no limit)"}
    )
    cpu: bool = field(default=False, metadata={"help": "force CPU even with a GPU"})
    group_by_length: bool = field(
        default=True,
        metadata={"help": "training batches of clips of similar length (less padding)"},
    )
    loader_workers: int | None = field(
        default=None,
        metadata={"help": "processes that read and pad batches beside the model (none: "
                  "up to 4 with CUDA, 0 on a CPU)"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        problems = []
        try:
            self.head_config()
        except ValueError as err:  # the head's settings, checked by the head's own rules
            problems.append(str(err).removeprefix(BAD_HEAD_PREFIX))
        if not self.encoder_lr > 0:
            problems.append(f"encoder_lr must be > 0 (got {self.encoder_lr})")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)} "
                f"(got {self.mixed_precision!r})"
            )
        if self.gradient_accumulation_steps < 1:
            problems.append(
                f"gradient_accumulation_steps must be >= 1 (got {self.gradient_accumulation_steps})"
            )
        if not self.max_audio_s > 0:
            problems.append(f"max_audio_s must be > 0 (got {self.max_audio_s})")
        if self.max_text_tokens < 1:
            problems.append(f"max_text_tokens must be >= 1 (got {self.max_text_tokens})")
        if self.loader_workers is not None and self.loader_workers < 0:
            problems.append(f"loader_workers must be >= 0 (got {self.loader_workers})")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 (got {self.max_steps})")
        if problems:
            raise ValueError("bad fine-tuning config: " + "; ".join(problems))

    def resolved(self, cuda: bool, bf16_supported: bool) -> FinetuneConfig:
        """The config with ``mixed_precision="auto"`` made definite: bf16 autocast on a
        CUDA GPU that supports it (the encoders' norms and softmax stay float32, as
        torch.autocast keeps them), none on a CPU or an older GPU."""
        if self.mixed_precision != "auto":
            return self
        use_bf16 = cuda and bf16_supported and not self.cpu
        return dataclasses.replace(self, mixed_precision="bf16" if use_bf16 else "no")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def head_config(self) -> TrainConfig:
        """The head's share of the settings, as the bundle records them."""
        return TrainConfig(
            batch_size=self.batch_size, epochs=self.epochs, lr=self.lr,
            weight_decay=self.weight_decay, hidden=self.hidden, dropout=self.dropout,
            seed=self.seed, select=False, speaker_norm="off",  # the encoders move: no CV, no norm
        )  # fmt: skip
