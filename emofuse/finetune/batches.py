"""What fine-tuning feeds the model: :class:`Clips` (a table's rows as labelled waves and
texts, audio cropped to ``max_audio_s``), :class:`Collate` (a list of them as one padded
model batch, prepared by the feature encoders' input plan),
:class:`LengthGroupedOrder` (an epoch's order in which neighbours have similar lengths,
so batches pad little) and :func:`usable_audio` (a header check of every clip, so a
broken file is dropped up front).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

SAMPLE_RATE_HZ = DEFAULT_SAMPLE_RATE_HZ


class Clips(torch.utils.data.Dataset):
    """A table's rows as items: the label index, the text, and (when the model hears) the
    wave at the model's rate, cropped to ``max_audio_s``."""

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


class Collate:
    """Items of :class:`Clips` to one model batch: texts tokenised, labels as a tensor,
    and waves as feature extraction prepares them (its
    :class:`~emofuse.encoders.hf_inputs.SpeechInputPlan`: silence rule, receptive-field
    padding, zero-padded to the longest) with their lengths. The per-clip normalisation
    is left to the model, on its device (:class:`~emofuse.finetune.model.FinetuneModel`),
    unless the checkpoint's feature extractor is not Wav2Vec2's: then its own code
    prepares the batch here, on the CPU."""

    def __init__(
        self,
        speech_dir: str | None,
        text_dir: str | None,
        max_text_tokens: int,
        max_audio_s: float,
    ):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer

        from emofuse.encoders.hf_inputs import SpeechInputPlan
        from emofuse.encoders.hf_speech import normalises_like_wav2vec2, receptive_field_samples

        self.extractor = AutoFeatureExtractor.from_pretrained(speech_dir) if speech_dir else None
        # Clips shorter than one frame's receptive field are zero-padded to it, as the
        # feature encoder does (its padded length is then the clip's length).
        self.min_samples = (
            receptive_field_samples(AutoConfig.from_pretrained(speech_dir)) if speech_dir else 0
        )
        self.plan = None
        if self.extractor is not None and normalises_like_wav2vec2(self.extractor):
            window = max(1, int(round(max_audio_s * SAMPLE_RATE_HZ)))
            self.plan = SpeechInputPlan(SAMPLE_RATE_HZ, self.min_samples, window, "crop")
        self.tokenizer = AutoTokenizer.from_pretrained(text_dir) if text_dir else None
        self.max_text_tokens = max_text_tokens

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"labels": torch.tensor([it["label"] for it in items])}
        if self.plan is not None:
            prepared = self.plan([it["wave"] for it in items])
            batch["input_values"], batch["audio_lengths"] = prepared.values, prepared.lengths
        elif self.extractor is not None:
            from emofuse.encoders.hf_speech import pad_to_receptive_field, prepare_speech_inputs

            waves = pad_to_receptive_field([it["wave"] for it in items], self.min_samples)
            out = prepare_speech_inputs(
                self.extractor, waves, SAMPLE_RATE_HZ, takes_attention_mask=False
            )
            batch["input_values"] = out["input_values"]
            batch["audio_lengths"] = torch.tensor([len(w) for w in waves])
        if self.tokenizer is not None:
            out = self.tokenizer(
                [it["text"] for it in items], padding=True, truncation=True,
                max_length=self.max_text_tokens, return_tensors="pt",
            )  # fmt: skip
            batch["input_ids"], batch["text_mask"] = out["input_ids"], out["attention_mask"]
        return batch


def item_lengths(table: pd.DataFrame, use_audio: bool, max_audio_s: float) -> np.ndarray:
    """What a batch is padded to, per row: seconds of audio (cropped to ``max_audio_s``;
    from ``duration_s``, 0 where unknown) when the model hears, else characters of text."""
    if use_audio and "duration_s" in table:
        seconds = pd.to_numeric(table["duration_s"], errors="coerce").fillna(0.0)
        return np.minimum(seconds.to_numpy(dtype=float), max_audio_s)
    return table["text"].fillna("").astype(str).str.len().to_numpy(dtype=float)


class LengthGroupedOrder(torch.utils.data.Sampler[int]):
    """The order of one epoch, grouped by length (Hugging Face's ``group_by_length``): the
    items shuffled, cut into groups of ``group_batches`` batches, each group sorted by
    length, so that consecutive items (one batch) have similar lengths while every epoch
    differs. Without ``shuffle``: simply longest first. Each epoch's order depends only
    on ``seed`` and the epoch number, so every process of a distributed run sees the same.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        group_batches: int = 50,
    ):
        self.lengths = np.asarray(lengths, dtype=float)
        self.group = max(1, batch_size * group_batches)
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        if not self.shuffle:
            return iter(np.argsort(-self.lengths, kind="stable").tolist())
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        groups = [order[i : i + self.group] for i in range(0, len(order), self.group)]
        ordered = [g[np.argsort(-self.lengths[g], kind="stable")] for g in groups]
        return iter(np.concatenate(ordered).tolist() if ordered else [])


def start_loader_worker(_worker_id: int) -> None:
    """A DataLoader's ``worker_init_fn``: the worker never outlives the command."""
    from emofuse.workers import die_with_parent

    die_with_parent()


def usable_audio(table: pd.DataFrame) -> np.ndarray:
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
