"""Fine-tuning and feature extraction prepare audio the same way.

A checkpoint without an attention mask (group-norm feature encoder, like wav2vec2-base)
is where they used to differ: extraction normalised each clip over its own samples,
fine-tuning over the padded batch; and padding itself changed such a model's output, so
both now run it on equal-length groups. Clips of different lengths in one batch show it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.requirements import need_module

need_module("transformers")
import torch  # noqa: E402
from support.tiny_models import make_tiny_wav2vec2  # noqa: E402

from emofuse.encoders import build_encoder  # noqa: E402
from emofuse.encoders.hf_speech import prepare_speech_inputs  # noqa: E402


@pytest.fixture(scope="module")
def unmasked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "model", attention_mask=False)


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Different lengths and levels, so padding and normalisation both matter; two of
    # equal length (batched together) and one shorter than a frame's receptive field.
    return [
        (0.3 * rng.standard_normal(4000) + 0.1).astype(np.float32),
        (0.05 * rng.standard_normal(9000)).astype(np.float32),
        (0.2 * rng.standard_normal(4000)).astype(np.float32),
        (0.1 * rng.standard_normal(300)).astype(np.float32),
    ]


def test_the_model_takes_no_attention_mask(unmasked):
    encoder = build_encoder(str(unmasked), "speech")
    assert not encoder.uses_attention_mask


def test_prepared_inputs_are_normalised_per_clip(unmasked):
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(unmasked)
    waves = _clips()
    batch = prepare_speech_inputs(extractor, waves, 16_000, takes_attention_mask=False)
    assert set(batch) == {"input_values"}
    for row, wave in zip(batch["input_values"].numpy(), waves, strict=True):
        alone = prepare_speech_inputs(extractor, [wave], 16_000, takes_attention_mask=False)
        np.testing.assert_allclose(row[: wave.size], alone["input_values"][0].numpy(), atol=1e-5)
        assert not row[wave.size :].any()  # padding stays silence


@pytest.fixture(scope="module")
def masked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("w2v-mask") / "model", attention_mask=True)


def _finetune_vectors(directory: Path, waves: list[np.ndarray], *, train: bool = False):
    from emofuse.finetune.batches import Collate
    from emofuse.finetune.config import FinetuneConfig
    from emofuse.finetune.model import FinetuneModel

    config = FinetuneConfig()
    model = FinetuneModel(str(directory), None, n_classes=2, config=config)
    model.head = torch.nn.Identity()  # the forward pass up to the head: the clip vectors
    model.train(train)
    collate = Collate(str(directory), None, config.max_text_tokens, config.max_audio_s)
    batch = collate([{"label": 0, "text": "", "wave": wave} for wave in waves])
    return model, model(batch)


@pytest.mark.parametrize("fixture", ["unmasked", "masked"])
def test_finetuning_features_match_the_encoder(request, fixture):
    """Fine-tuning's vectors for a batch equal the encoder's for the same clips, and
    both equal each clip encoded alone (no batch-partner effect)."""
    directory = request.getfixturevalue(fixture)
    waves = _clips()
    # On the CPU, as the fine-tuning model here (a GPU's float32 differs in the 6th digit).
    encoder = build_encoder(f"{directory}?pooling=mean&device=cpu", "speech")
    expected = encoder.encode(waves)
    for row, wave in zip(expected, waves, strict=True):
        np.testing.assert_allclose(row, encoder.encode([wave])[0], atol=1e-5)

    with torch.no_grad():
        got = _finetune_vectors(directory, waves)[1].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_unmasked_grouped_forward_trains(unmasked):
    """Gradients reach the speech model through the per-group forward passes."""
    model, vectors = _finetune_vectors(unmasked, _clips(), train=True)
    vectors.square().sum().backward()
    grads = [p.grad for p in model.speech.encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("fixture", ["unmasked", "masked"])
def test_the_loader_ships_raw_waves_and_the_model_normalises_them(request, fixture):
    """Fine-tuning's loader does what extraction's does (the encoder's input plan: no
    normalisation on the CPU); the model normalises each clip on its own device."""
    from emofuse.finetune.batches import Collate

    directory = request.getfixturevalue(fixture)
    waves = _clips()
    batch = Collate(str(directory), None, 128, max_audio_s=8.0)(
        [{"label": 0, "text": "", "wave": wave} for wave in waves]
    )
    plan = build_encoder(f"{directory}?long=crop&max_duration_s=8", "speech").input_plan()
    expected = plan(waves)
    assert torch.equal(batch["input_values"], expected.values)
    assert torch.equal(batch["audio_lengths"], expected.lengths)
    model, _ = _finetune_vectors(directory, waves)
    assert model.normalises and model.takes_mask == (fixture == "masked")
