"""Which hidden states of a Hugging Face model a vector comes from (the layer choice) and
how a sequence of them is pooled over its valid steps into one vector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emofuse.encoders.base import EncoderError

if TYPE_CHECKING:
    import torch

#: Layer choices: "last" (the model's ``last_hidden_state``), an int index into
#: ``hidden_states`` as transformers returns them (0 = the embeddings / feature-projection
#: output, N = the N-th transformer layer's output, negative counts from the end), or
#: "mean" (the mean of the N transformer layers' outputs, *excluding* the embeddings
#: output, which carries no context). For pre-norm models (wav2vec2-large-robust:
#: ``do_stable_layer_norm``) transformers 5 returns layer N *before* the encoder's final
#: layer norm, so layer N and "last" differ there; for post-norm models they agree.
LayerChoice = str | int


def parse_layer(value: str | int) -> LayerChoice:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in ("last", "mean"):
        return text
    try:
        return int(text)
    except ValueError:
        raise EncoderError(
            f"unknown layer {value!r}: use 'last', 'mean' or a layer number"
        ) from None


def check_layer(layer: LayerChoice, num_layers: int, model_name: str) -> None:
    if isinstance(layer, int) and not -(num_layers + 1) <= layer <= num_layers:
        raise EncoderError(
            f"layer {layer} out of range for {model_name}: it has {num_layers} layers "
            f"(0 = embeddings output, {num_layers} = last; negative counts from the end)"
        )


def select_layer(
    outputs: Any, layer: LayerChoice, *, mean_in_float32: bool = False
) -> torch.Tensor:
    """The hidden states asked for, shape (batch, time, dim). ``mean_in_float32``: average
    the layers in float32 (a float32 model under autocast returns some in bfloat16)."""
    import torch

    if layer == "last":
        return outputs.last_hidden_state
    hidden = outputs.hidden_states
    if layer == "mean":
        layers = [h.float() for h in hidden[1:]] if mean_in_float32 else hidden[1:]
        return torch.stack(layers, dim=0).mean(dim=0)
    return hidden[layer]


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (batch, time, dim) over the valid steps of ``mask`` (batch, time) -> (batch, dim).
    Computed in float32 whatever the model's dtype."""
    import torch

    hidden = hidden.float()
    valid = mask.to(hidden.device, torch.bool)
    if pooling == "mean":
        weights = valid.unsqueeze(-1).float()
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(~valid.unsqueeze(-1), float("-inf")).max(dim=1).values
    raise EncoderError(f"unknown pooling {pooling!r}")
