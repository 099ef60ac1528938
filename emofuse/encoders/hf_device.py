"""Where and in what precision a Hugging Face model runs: device choice (CUDA, then Apple
MPS, then CPU) and the dtype names a spec may use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emofuse.encoders.base import EncoderError

if TYPE_CHECKING:
    import torch

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def parse_dtype(value: str) -> str:
    key = str(value).strip().lower()
    if key not in DTYPES:
        raise EncoderError(f"unknown dtype {value!r}: use one of float32, bfloat16, float16")
    return DTYPES[key]


def pick_device(device: str | None) -> torch.device:
    """``None``/"auto": CUDA if present, else Apple MPS, else CPU."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise EncoderError(f"unknown device {device!r}: {error}") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} asked for but CUDA is not available here")
    return chosen


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "float16" and device.type == "cpu":
        raise EncoderError("float16 needs a GPU; on the CPU use bfloat16 or float32")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
