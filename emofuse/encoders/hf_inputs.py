"""What runs beside a Hugging Face model: raw items made into padded CPU tensors by an
*input plan* (a small picklable object, so that it can run in DataLoader worker
processes while the model works), and the per-clip waveform normalisation, done on the
model's device with the feature extractor's own arithmetic.

A plan does no model work and needs no weights: :class:`SpeechInputPlan` checks the
waveforms, splits or crops long clips, turns effectively silent ones into digital
silence, pads clips shorter than one frame's receptive field, and pads the batch with
zeros; :class:`TextInputPlan` tokenises and pads a batch of texts. The encoders'
``encode()`` runs the same plan in-process, so a clip reaches the model the same way
through either door.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from emofuse.audio_checks import quiet_as_silence
from emofuse.encoders.base import EncoderError

if TYPE_CHECKING:
    import torch

#: Added to the variance before the square root, as Wav2Vec2FeatureExtractor does.
NORM_EPSILON = 1e-7


@runtime_checkable
class PreparedInputEncoder(Protocol):
    """An encoder whose inputs are prepared apart from the model (see the module
    docstring): ``encode(items) == encode_prepared(input_plan()(items))``."""

    def input_plan(self) -> Any:
        """A picklable callable: a list of items (waveforms or texts) -> a prepared batch."""

    def encode_prepared(self, prepared: Any) -> np.ndarray:
        """float32 vectors (len(items), dim) for a batch made by :meth:`input_plan`."""

    def load(self) -> None:
        """Load the model now (otherwise it loads on first use)."""

    # Such encoders also have a ``device`` property (where the model runs); it is not a
    # protocol member because isinstance() would evaluate it.


def check_wave(index: int, item: Any) -> np.ndarray:
    """Item ``index`` of a speech batch as a float32 mono waveform, or an EncoderError."""
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


@dataclass
class SpeechBatch:
    """Segments of a batch of clips (a long clip may give several), zero-padded to the
    longest, not yet normalised: ``values`` (segments, samples) float32, ``lengths``
    (segments,) int64 and the clip each segment belongs to (``owners``)."""

    values: torch.Tensor
    lengths: torch.Tensor
    owners: list[int]
    n_items: int

    def pin_memory(self) -> SpeechBatch:
        """Called by a DataLoader with ``pin_memory=True``: page-locked, so the copy to
        the GPU can overlap the work."""
        return SpeechBatch(self.values.pin_memory(), self.lengths, self.owners, self.n_items)

    def waves(self) -> list[np.ndarray]:
        """The clips again (their segments joined), for re-encoding items one by one."""
        pieces: list[list[np.ndarray]] = [[] for _ in range(self.n_items)]
        for row, owner in enumerate(self.owners):
            pieces[owner].append(self.values[row, : int(self.lengths[row])].numpy())
        return [np.concatenate(p) for p in pieces]


@dataclass(frozen=True)
class SpeechInputPlan:
    """Waveforms at ``sample_rate_hz`` -> :class:`SpeechBatch` (see the module docstring).
    ``window_samples``: the longest segment; a longer clip is split into equal windows
    (``long="chunk"``) or cut (``"crop"``). ``min_samples``: one frame's receptive field."""

    sample_rate_hz: int
    min_samples: int
    window_samples: int
    long: str

    def windows(self, wave: np.ndarray) -> list[np.ndarray]:
        if wave.size > self.window_samples:
            if self.long == "crop":
                return [wave[: self.window_samples]]
            return list(np.array_split(wave, math.ceil(wave.size / self.window_samples)))
        return [wave]

    def __call__(self, waves: Sequence[Any]) -> SpeechBatch:
        import torch

        segments: list[np.ndarray] = []
        owners: list[int] = []
        for index, item in enumerate(waves):
            for window in self.windows(check_wave(index, item)):
                # Effectively silent clips as digital silence: the rule of every speech
                # encoder; a clip shorter than one frame is zero-padded to give one.
                window = quiet_as_silence(window)
                if window.size < self.min_samples:
                    window = np.pad(window, (0, self.min_samples - window.size))
                segments.append(window)
                owners.append(index)
        width = max((s.size for s in segments), default=0)
        values = torch.zeros((len(segments), width), dtype=torch.float32)
        for row, segment in enumerate(segments):
            values[row, : segment.size] = torch.from_numpy(segment)
        lengths = torch.tensor([s.size for s in segments], dtype=torch.long)
        return SpeechBatch(values, lengths, owners, len(waves))


def sample_mask(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(segments, samples) bool on ``values``' device: True on each row's first
    ``lengths`` samples, False on its padding."""
    import torch

    steps = torch.arange(values.shape[1], device=values.device)
    return steps[None, :] < lengths.to(values.device)[:, None]


def normalise_waves(
    values: torch.Tensor, lengths: torch.Tensor, *, padding_value: float = 0.0
) -> torch.Tensor:
    """Wav2Vec2FeatureExtractor's ``zero_mean_unit_var_norm`` on the tensor's device:
    each row minus its mean, over its variance plus 1e-7 square-rooted, both taken over
    the row's first ``lengths`` samples only; the padding set to ``padding_value``."""
    import torch

    valid = sample_mask(values, lengths)
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    # float64 sums (where the device has them): the mean of 10^6 samples loses nothing.
    data = values.to(torch.float32 if values.device.type == "mps" else torch.float64)
    mean = torch.where(valid, data, 0.0).sum(dim=1, keepdim=True) / count
    variance = torch.where(valid, (data - mean) ** 2, 0.0).sum(dim=1, keepdim=True) / count
    normed = ((data - mean) / torch.sqrt(variance + NORM_EPSILON)).float()
    return torch.where(valid, normed, torch.full_like(normed, padding_value))


@dataclass
class TextInputPlan:
    """Texts -> a padded batch of token ids and masks (torch tensors): the tokenizer
    truncating to ``max_length``, padded to the batch's longest text."""

    tokenizer: Any
    max_length: int
    sentencepiece: bool = field(default=False)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.sentencepiece:  # emofuse.encoders.hf_text.KoBertTokenizer
            return self.tokenizer(list(texts), max_length=self.max_length)
        return dict(
            self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )
