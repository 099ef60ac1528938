"""The model fine-tuning trains: Hugging Face speech and/or text transformers whose last
layer, mean-pooled over valid frames / tokens, feeds the same
:class:`~emofuse.head.model.FusionHead` as head training. The pooling is the feature
encoders' ``<dir>?pooling=mean``, so a fine-tuned checkpoint saved as a feature encoder
gives the vectors the head was trained on. A speech checkpoint that takes no attention
mask (wav2vec2-base style) runs on groups of equal-length clips, as in feature extraction,
so a batch of clips of all different lengths costs one forward pass per clip.
"""

from __future__ import annotations

import torch
from torch import nn

from emofuse.finetune.config import FinetuneConfig
from emofuse.head.model import FusionHead


class FinetuneModel(nn.Module):
    """Speech and/or text transformer -> mean-pooled last layer -> [A; T] -> FusionHead."""

    def __init__(
        self, speech_dir: str | None, text_dir: str | None, n_classes: int, config: FinetuneConfig
    ):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        from emofuse.encoders.hf_speech import normalises_like_wav2vec2, takes_attention_mask

        self.speech = AutoModel.from_pretrained(speech_dir) if speech_dir else None
        # How the waves of a batch (emofuse.finetune.batches.Collate) become inputs here,
        # on the model's device: normalised per clip over its own samples when the feature
        # extractor is Wav2Vec2's and normalises (another kind prepared them on the CPU);
        # the sample mask built from the lengths for checkpoints that take one.
        self.normalises: bool = False
        self.padding_value, self.takes_mask = 0.0, False
        if speech_dir:
            extractor = AutoFeatureExtractor.from_pretrained(speech_dir)
            self.normalises = normalises_like_wav2vec2(extractor) and bool(
                getattr(extractor, "do_normalize", True)
            )
            self.padding_value = float(getattr(extractor, "padding_value", 0.0))
            self.takes_mask = takes_attention_mask(extractor)
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
            vectors.append(self._speech_vectors(batch))
        if self.text is not None:
            hidden = self.text(
                input_ids=batch["input_ids"], attention_mask=batch["text_mask"]
            ).last_hidden_state
            vectors.append(_mean_pool(hidden, batch["text_mask"].bool()))
        return self.head(torch.cat(vectors, dim=1))

    def _speech_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean-pooled last layer over each clip's valid frames, run as the feature
        encoder runs it: one padded pass with the attention mask, or, for a checkpoint
        that takes none, one pass per group of equal-length clips with the padding cut
        off (see emofuse.encoders.hf_speech), so its vectors match the encoder's."""
        from emofuse.encoders.hf_inputs import normalise_waves, sample_mask
        from emofuse.encoders.hf_speech import equal_length_groups

        assert self.speech is not None
        values, lengths = batch["input_values"], batch["audio_lengths"]
        if self.normalises:
            values = normalise_waves(values, lengths, padding_value=self.padding_value)
        if self.takes_mask:
            mask = sample_mask(values, lengths).to(torch.int32)
            hidden = self.speech(values, attention_mask=mask).last_hidden_state
            return _pool_frames(hidden, self.speech._get_feat_extract_output_lengths(lengths))
        pooled, order = [], []
        for group in equal_length_groups(lengths.tolist()):
            rows = torch.tensor(group, device=values.device)
            length = int(lengths[group[0]])
            hidden = self.speech(values[rows, :length]).last_hidden_state
            frames = self.speech._get_feat_extract_output_lengths(lengths[rows])
            pooled.append(_pool_frames(hidden, frames))
            order.extend(group)
        inverse = torch.empty(len(order), dtype=torch.long, device=values.device)
        inverse[torch.tensor(order, device=values.device)] = torch.arange(
            len(order), device=values.device
        )
        return torch.cat(pooled)[inverse]


def _pool_frames(hidden: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mean of each row's first ``frames`` steps (at least one)."""
    steps = torch.arange(hidden.shape[1], device=hidden.device)
    valid = steps[None, :] < frames.to(hidden.device).clamp(min=1)[:, None]
    return _mean_pool(hidden, valid)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
