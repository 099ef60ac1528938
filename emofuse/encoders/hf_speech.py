"""Clip vectors from a self-supervised speech model (wav2vec 2.0, HuBERT, WavLM, ...).

One vector per clip: the chosen layer's frame vectors pooled over the clip's *valid*
frames. Valid frames come from each clip's own length in samples through the model's
``_get_feat_extract_output_lengths``, so padding frames never enter the pool, whether
or not the checkpoint takes an attention mask.

Batching and padding. Checkpoints whose feature extractor says
``return_attention_mask=True`` (wav2vec2-large-robust, -lv60, XLS-R, WavLM; layer-norm
feature encoders) are run on padded batches with the mask. Checkpoints without it
(wav2vec2-base, HuBERT-base; group-norm feature encoders) must not be given a mask, and
padding would change their output (the first convolution's GroupNorm normalises over the
whole time axis and attention sees the padded frames), so they are run on groups of clips
of exactly equal length (:func:`equal_length_groups`), in the feature encoders and in
fine-tuning alike: no padding ever enters such a model. Either way a clip's vector does
not depend on what it is batched with. (Waveform normalisation is always per clip over
its own samples, on the model's device
(:func:`~emofuse.encoders.hf_inputs.normalise_waves`), in extraction and fine-tuning
alike; a feature extractor of another kind prepares the batch with its own code on the
CPU (:func:`prepare_speech_inputs`).)

Long clips: ``long="chunk"`` (default) splits a clip longer than ``max_duration_s`` into
equal windows no longer than that and averages their frame vectors weighted by frame
count (max-pooling takes the max); ``long="crop"`` keeps only the first
``max_duration_s``. Clips shorter than the model's receptive field (25 ms for wav2vec2)
are zero-padded to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from emofuse.audio_checks import quiet_as_silence
from emofuse.encoders.base import EncoderError
from emofuse.encoders.hf_checkpoint import load_pretrained
from emofuse.encoders.hf_encoder import HFEncoder, build_from_options
from emofuse.encoders.hf_inputs import (
    SpeechBatch,
    SpeechInputPlan,
    normalise_waves,
    sample_mask,
)
from emofuse.encoders.hf_layers import masked_pool
from emofuse.encoders.options import parse_choice, parse_float
from emofuse.modalities import SPEECH

#: Short names for common checkpoints (an existing directory of the same name wins).
SPEECH_ALIASES: dict[str, str] = {
    "wav2vec2-large-robust": "facebook/wav2vec2-large-robust",
    "wav2vec2-base": "facebook/wav2vec2-base",
    "wav2vec2-large-lv60": "facebook/wav2vec2-large-lv60",
    "wav2vec2-xls-r-300m": "facebook/wav2vec2-xls-r-300m",
    "wav2vec2-large-xlsr-53": "facebook/wav2vec2-large-xlsr-53",
    "hubert-base": "facebook/hubert-base-ls960",
    "hubert-large": "facebook/hubert-large-ll60k",
    "wavlm-base-plus": "microsoft/wavlm-base-plus",
    "wavlm-large": "microsoft/wavlm-large",
}

POOLINGS = ("mean", "max")
LONG_MODES = ("chunk", "crop")


def takes_attention_mask(feature_extractor: Any) -> bool:
    """Whether a checkpoint is meant to be given an attention mask: its feature extractor
    says so (layer-norm feature encoders do, group-norm ones such as wav2vec2-base do not)."""
    return bool(getattr(feature_extractor, "return_attention_mask", False))


def equal_length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of ``lengths`` grouped by equal length, in order of first appearance: how
    a checkpoint without an attention mask is batched, so that it never sees padding."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(int(length), []).append(index)
    return list(groups.values())


def receptive_field_samples(config: Any) -> int:
    """The receptive field of one output frame of a wav2vec2-style model, in samples
    (400 for wav2vec2: 25 ms at 16 kHz)."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def pad_to_receptive_field(waves: Sequence[np.ndarray], minimum: int) -> list[np.ndarray]:
    """Clips shorter than ``minimum`` samples zero-padded to it (so they give one frame);
    the padded length is the clip's length from then on."""
    return [w if w.size >= minimum else np.pad(w, (0, minimum - w.size)) for w in waves]


def prepare_speech_inputs(
    feature_extractor: Any,
    waves: Sequence[np.ndarray],
    sample_rate_hz: int,
    *,
    takes_attention_mask: bool,
    device: Any = None,
    dtype: Any = None,
) -> dict[str, Any]:
    """A padded batch of mono waveforms as model inputs, by the feature extractor's own
    code on the CPU: for extractors other than Wav2Vec2's (whose arithmetic
    :func:`~emofuse.encoders.hf_inputs.normalise_waves` repeats on the device, in feature
    extraction and fine-tuning alike).

    The extractor is always asked for the sample mask, which makes its waveform
    normalisation per clip over the clip's own samples (padding is set to zero after it,
    not normalised with it); the mask itself is returned as ``attention_mask`` only when
    the checkpoint takes one. Returns ``{"input_values": (batch, samples)[,
    "attention_mask": (batch, samples)]}`` as torch tensors on ``device``, input values
    in ``dtype``.
    """
    inputs = feature_extractor(
        # Effectively silent clips as digital silence: the one rule of every speech encoder.
        [quiet_as_silence(wave) for wave in waves],
        sampling_rate=sample_rate_hz,
        padding=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    out = {"input_values": inputs["input_values"].to(device=device, dtype=dtype)}
    if takes_attention_mask:
        out["attention_mask"] = inputs["attention_mask"].to(device=device)
    return out


class HFSpeechEncoder(HFEncoder):
    """A Hugging Face speech model by hub name, alias or local directory.

    ``layer``: "last", "mean" (mean of all transformer layers, embeddings output
    excluded) or an index into hidden_states (0 = feature projection output).
    ``pooling``: "mean" or "max" over valid frames. ``dtype``: float32 / bfloat16 /
    float16 (GPU only). ``device``: None picks CUDA, then MPS, then CPU. The model loads on
    first use, once.
    """

    modality: ClassVar[str] = SPEECH
    name: ClassVar[str] = "hf-speech"

    aliases = SPEECH_ALIASES
    spec_defaults = {"layer": "last", "pooling": "mean", "max_duration_s": 30.0, "long": "chunk"}

    def __init__(
        self,
        model: str,
        *,
        pooling: str = "mean",
        max_duration_s: float | str = 30.0,
        long: str = "chunk",
        **common: Any,
    ):
        super().__init__(model, **common)
        self.pooling = parse_choice(pooling, POOLINGS, name="speech pooling")
        self.max_duration_s = parse_float(max_duration_s, name="max_duration_s")
        if not math.isfinite(self.max_duration_s) or self.max_duration_s <= 0:
            raise EncoderError(f"max_duration_s must be a positive number, got {max_duration_s!r}")
        self.long = parse_choice(long, LONG_MODES, name="long-clip mode")
        self._feature_extractor: Any = None

    # ---- light metadata (no model weights needed) -------------------------------------
    def _check_config(self, config: Any) -> None:
        if not hasattr(config, "conv_kernel"):
            raise EncoderError(
                f"{self.source.requested}: a {config.model_type!r} model is not a "
                "wav2vec2-style speech model (no convolutional feature encoder)"
            )

    def _extractor(self) -> Any:
        if self._feature_extractor is None:
            self._hf_config()
            self._feature_extractor = load_pretrained(self.source, "AutoFeatureExtractor")
        return self._feature_extractor

    def _load_preprocessor(self) -> Any:
        return self._extractor()

    @property
    def sample_rate_hz(self) -> int:  # type: ignore[override]
        return int(self._extractor().sampling_rate)

    @property
    def uses_attention_mask(self) -> bool:
        """Whether the checkpoint takes an attention mask (see the module docstring)."""
        return takes_attention_mask(self._extractor())

    # ---- the model ----------------------------------------------------------------------
    def _min_samples(self) -> int:
        """The receptive field of one output frame, in samples (400 for wav2vec2)."""
        return receptive_field_samples(self._hf_config())

    def _frame_lengths(self, sample_lengths: Sequence[int] | Any) -> Any:
        import torch

        lengths = torch.as_tensor(sample_lengths, dtype=torch.long).cpu()
        model = self._load()
        if hasattr(model, "_get_feat_extract_output_lengths"):
            return model._get_feat_extract_output_lengths(lengths).long()
        config = self._hf_config()  # same arithmetic, for models without the helper
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    def input_plan(self) -> SpeechInputPlan:
        """What turns waveforms into a padded batch, apart from the model (in DataLoader
        workers during feature extraction; see :mod:`emofuse.encoders.hf_inputs`)."""
        window = max(1, int(round(self.max_duration_s * self.sample_rate_hz)))
        return SpeechInputPlan(self.sample_rate_hz, self._min_samples(), window, self.long)

    def _model_inputs(self, values: Any, lengths: Any) -> dict[str, Any]:
        """Segments on the device -> the model's inputs: each normalised over its own
        samples (the feature extractor's arithmetic, done here on the device; padding
        stays zero), plus the sample mask for checkpoints that take one."""
        import torch

        model = self._load()
        extractor = self._extractor()
        if not normalises_like_wav2vec2(extractor):  # another extractor: its own code, on CPU
            waves = [values[i, : int(n)].cpu().numpy() for i, n in enumerate(lengths)]
            return prepare_speech_inputs(
                extractor, waves, self.sample_rate_hz, device=self.device, dtype=model.dtype,
                takes_attention_mask=self.uses_attention_mask,
            )  # fmt: skip
        if getattr(extractor, "do_normalize", True):
            values = normalise_waves(
                values, lengths, padding_value=float(getattr(extractor, "padding_value", 0.0))
            )
        inputs = {"input_values": values.to(model.dtype)}
        if self.uses_attention_mask:
            inputs["attention_mask"] = sample_mask(values, lengths).to(torch.int32)
        return inputs

    def _forward(self, values: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pooled vectors and valid frame counts for segments (rows of ``values`` on the
        device, their ``lengths`` on the CPU): one padded forward pass with the attention mask,
        or, for a checkpoint that takes none, one pass per group of equal-length segments
        (no padding)."""
        if self.uses_attention_mask:
            return self._forward_padded(values, lengths)
        vectors = np.zeros((len(lengths), self.dim), dtype=np.float32)
        frames = np.zeros(len(lengths), dtype=np.int64)
        for group in equal_length_groups(lengths.tolist()):
            vectors[group], frames[group] = self._forward_padded(values[group], lengths[group])
        return vectors, frames

    def _forward_padded(self, values: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass over segments padded to the longest of them."""
        import torch

        values = values[:, : int(lengths.max())]
        inputs = self._model_inputs(values, lengths)
        frames = self._frame_lengths(lengths).clamp(min=1)
        on_device = frames.to(self.device)

        def pool(hidden: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
            valid = steps < on_device.clamp(max=hidden.shape[1])[:, None]
            return masked_pool(hidden, valid, self.pooling)

        return self._pooled(inputs, pool), frames.numpy()

    def encode_prepared(self, prepared: SpeechBatch) -> np.ndarray:
        """Vectors for a batch made by :meth:`input_plan`: its segments copied to the
        device (without waiting, from pinned memory), run in forward passes of at most
        as many segments as the batch has clips, chunked clips merged back."""
        if prepared.n_items == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        values = prepared.values.to(self.device, non_blocking=True)
        lengths = prepared.lengths  # on the CPU: length arithmetic never waits for the device
        vectors, frames = [], []
        step = prepared.n_items  # chunked clips add segments: keep each pass batch-sized
        for start in range(0, len(prepared.owners), step):
            rows = slice(start, start + step)
            pooled, counts = self._forward(values[rows], lengths[rows])
            vectors.append(pooled)
            frames.append(counts)
        return _combine(
            np.concatenate(vectors), np.concatenate(frames), prepared.owners,
            prepared.n_items, self.pooling,
        )  # fmt: skip

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        if isinstance(batch, str) or (len(batch) > 0 and isinstance(batch[0], str)):
            raise EncoderError("a speech encoder takes waveforms, not strings")
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(self.input_plan()(batch))


def normalises_like_wav2vec2(extractor: Any) -> bool:
    """Whether ``extractor`` normalises as Wav2Vec2FeatureExtractor does (the arithmetic
    :func:`~emofuse.encoders.hf_inputs.normalise_waves` repeats)."""
    return any(cls.__name__ == "Wav2Vec2FeatureExtractor" for cls in type(extractor).__mro__)


def _combine(
    vectors: np.ndarray, frames: np.ndarray, owners: list[int], n_items: int, pooling: str
) -> np.ndarray:
    """Merge the windows of chunked clips back into one vector per clip."""
    if len(owners) == n_items:
        return vectors
    out = np.zeros((n_items, vectors.shape[1]), dtype=np.float32)
    owner_array = np.asarray(owners)
    for item in range(n_items):
        rows = owner_array == item
        if pooling == "max":
            out[item] = vectors[rows].max(axis=0)
        else:
            weights = frames[rows].astype(np.float64)
            out[item] = (vectors[rows] * weights[:, None]).sum(axis=0) / weights.sum()
    return out


def build(options: Mapping[str, str]) -> HFSpeechEncoder:
    """Registry factory: ``{"model": name_or_dir, "layer": "6", "pooling": "mean", ...}``."""
    return build_from_options(HFSpeechEncoder, options, SPEECH)
