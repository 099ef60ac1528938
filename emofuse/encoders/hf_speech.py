"""Clip vectors from a self-supervised speech model (wav2vec 2.0, HuBERT, WavLM, ...).

One vector per clip: the chosen layer's frame vectors pooled over the clip's *valid*
frames. Valid frames come from each clip's own length in samples through the model's
``_get_feat_extract_output_lengths``, so padding frames never enter the pool, whether
or not the checkpoint takes an attention mask.

Batching and padding. Checkpoints whose feature extractor says
``return_attention_mask=True`` (wav2vec2-large-robust, -lv60, XLS-R, WavLM; layer-norm
feature encoders) get the mask and a clip's vector does not depend on what it is batched
with. Checkpoints without it (wav2vec2-base, HuBERT-base; group-norm feature encoders)
must not be given a mask: their first convolution's GroupNorm normalises over the whole
padded time axis and attention sees the padded frames, so a clip padded next to a longer
one comes out slightly different from the same clip alone. Pooling still covers only its
valid frames. The feature store groups batches by duration, which keeps padding small;
use batch size 1 where exact per-clip vectors matter for such checkpoints. (Waveform
normalisation is always per clip over its own samples.)

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

from emofuse.encoders.base import EncoderError
from emofuse.encoders.hf_common import (
    HFEncoder,
    LayerChoice,
    check_options,
    hub_errors,
    masked_pool,
    parse_layer,
    quiet_transformers,
    resolve_source,
    select_layer,
)

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
_OPTIONS = {"model", "layer", "pooling", "max_duration_s", "long", "device", "dtype"}


class HFSpeechEncoder(HFEncoder):
    """A Hugging Face speech model by hub name, alias or local directory.

    ``layer``: "last", "mean" (mean of all transformer layers, embeddings output
    excluded) or an index into hidden_states (0 = feature projection output).
    ``pooling``: "mean" or "max" over valid frames. ``dtype``: float32 / bfloat16 /
    float16 (GPU only). ``device``: None picks CUDA, then MPS, then CPU. The model loads on
    first use, once.
    """

    modality: ClassVar[str] = "speech"
    name: ClassVar[str] = "hf-speech"

    def __init__(
        self,
        model: str,
        *,
        layer: LayerChoice = "last",
        pooling: str = "mean",
        max_duration_s: float = 30.0,
        long: str = "chunk",
        device: str | None = None,
        dtype: str = "float32",
    ):
        source = resolve_source(model, SPEECH_ALIASES)
        layer = parse_layer(layer)
        if pooling not in POOLINGS:
            raise EncoderError(f"unknown speech pooling {pooling!r}: use one of {POOLINGS}")
        self.pooling = pooling
        self.max_duration_s = float(max_duration_s)
        if not math.isfinite(self.max_duration_s) or self.max_duration_s <= 0:
            raise EncoderError(f"max_duration_s must be a positive number, got {max_duration_s!r}")
        if long not in LONG_MODES:
            raise EncoderError(f"unknown long-clip mode {long!r}: use one of {LONG_MODES}")
        self.long = long
        super().__init__(source, layer, device=device, dtype=dtype)
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
            from transformers import AutoFeatureExtractor

            self._hf_config()
            with hub_errors(self.source), quiet_transformers():
                self._feature_extractor = AutoFeatureExtractor.from_pretrained(self.source.ref)
        return self._feature_extractor

    def _load_preprocessor(self) -> Any:
        return self._extractor()

    @property
    def sample_rate_hz(self) -> int:  # type: ignore[override]
        return int(self._extractor().sampling_rate)

    @property
    def uses_attention_mask(self) -> bool:
        """Whether the checkpoint takes an attention mask (see the module docstring)."""
        return bool(getattr(self._extractor(), "return_attention_mask", False))

    def _spec_options(self) -> list[tuple[str, Any, Any]]:
        return [
            ("layer", self.layer, "last"),
            ("pooling", self.pooling, "mean"),
            ("max_duration_s", self.max_duration_s, 30.0),
            ("long", self.long, "chunk"),
        ]

    # ---- the model ----------------------------------------------------------------------
    def _min_samples(self) -> int:
        """The receptive field of one output frame, in samples (400 for wav2vec2)."""
        config = self._hf_config()
        field, jump = 1, 1
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def _frame_lengths(self, sample_lengths: Sequence[int]) -> Any:
        import torch

        lengths = torch.tensor(list(sample_lengths), dtype=torch.long)
        model = self._load()
        if hasattr(model, "_get_feat_extract_output_lengths"):
            return model._get_feat_extract_output_lengths(lengths).long()
        config = self._hf_config()  # same arithmetic, for models without the helper
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        limit = max(1, int(round(self.max_duration_s * self.sample_rate_hz)))
        if wave.size > limit:
            if self.long == "crop":
                wave = wave[:limit]
            else:
                count = math.ceil(wave.size / limit)
                return [part for part in np.array_split(wave, count)]
        return [wave]

    def _check_wave(self, index: int, item: Any) -> np.ndarray:
        wave = np.asarray(item, dtype=np.float32)
        if wave.ndim != 1:
            raise EncoderError(
                f"speech batch item {index}: expected a mono waveform (1-D array), got shape {wave.shape}"
            )
        if wave.size == 0:
            raise EncoderError(f"speech batch item {index}: empty waveform")
        if not np.all(np.isfinite(wave)):
            raise EncoderError(f"speech batch item {index}: waveform has NaN or infinite samples")
        return wave

    def _forward(self, segments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled vectors and valid frame counts for one padded batch of segments."""
        import torch

        model = self._load()
        minimum = self._min_samples()
        segments = [s if s.size >= minimum else np.pad(s, (0, minimum - s.size)) for s in segments]
        lengths = [s.size for s in segments]
        # Always ask for the sample mask: it makes waveform normalisation per clip. It is
        # passed to the model only when the checkpoint is meant to take it.
        inputs = self._extractor()(
            segments,
            sampling_rate=self.sample_rate_hz,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        values = inputs["input_values"].to(self._device, model.dtype)
        kwargs: dict[str, Any] = {}
        if self.uses_attention_mask:
            kwargs["attention_mask"] = inputs["attention_mask"].to(self._device)
        with torch.inference_mode():
            outputs = model(values, output_hidden_states=self.layer != "last", **kwargs)
            hidden = select_layer(outputs, self.layer)
            frames = self._frame_lengths(lengths).clamp(min=1, max=hidden.shape[1])
            mask = torch.arange(hidden.shape[1])[None, :] < frames[:, None]
            pooled = masked_pool(hidden, mask, self.pooling)
        return pooled.cpu().numpy().astype(np.float32), frames.numpy()

    def encode(self, batch: Sequence[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        if isinstance(batch, str) or (len(batch) > 0 and isinstance(batch[0], str)):
            raise EncoderError("a speech encoder takes waveforms, not strings")
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        segments: list[np.ndarray] = []
        owners: list[int] = []
        for index, item in enumerate(batch):
            for window in self._windows(self._check_wave(index, item)):
                segments.append(window)
                owners.append(index)
        vectors, frames = [], []
        step = len(batch)  # chunked clips add segments: keep each forward pass batch-sized
        for start in range(0, len(segments), step):
            pooled, counts = self._forward(segments[start : start + step])
            vectors.append(pooled)
            frames.append(counts)
        return _combine(
            np.concatenate(vectors), np.concatenate(frames), owners, len(batch), self.pooling
        )


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
    check_options(options, _OPTIONS, "speech")
    kwargs: dict[str, Any] = {}
    for key in ("layer", "pooling", "long", "device", "dtype"):
        if key in options:
            kwargs[key] = options[key]
    if "max_duration_s" in options:
        try:
            kwargs["max_duration_s"] = float(options["max_duration_s"])
        except ValueError:
            raise EncoderError(
                f"max_duration_s must be a number, got {options['max_duration_s']!r}"
            ) from None
    return HFSpeechEncoder(options["model"], **kwargs)
