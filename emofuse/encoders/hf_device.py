"""Where and in what precision a Hugging Face model runs: device choice (CUDA, then Apple
MPS, then CPU), the dtype and autocast names a spec may use, and the numeric mode of a
forward pass (:func:`precision`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
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


#: Autocast choices of a spec (``autocast=...``): "off" keeps every operation in the
#: weights' dtype; "bfloat16"/"float16" run matrix products and convolutions in that
#: dtype while norms, softmax and the pooling stay in float32 (torch.autocast).
AUTOCASTS = {"off": "off", "no": "off", "fp32": "off", "float32": "off", **{
    k: v for k, v in DTYPES.items() if v != "float32"}}  # fmt: skip


def parse_autocast(value: str | None) -> str | None:
    """``None`` (not given) or one of "off", "bfloat16", "float16"."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in AUTOCASTS:
        raise EncoderError(f"unknown autocast {value!r}: use off, bfloat16 or float16")
    return AUTOCASTS[key]


def compute_dtype(weights: str, autocast: str | None) -> str:
    """The dtype a model's matrix products effectively run in: the autocast's when it is
    on (it only ever lowers float32 weights), else the weights'."""
    if autocast in (None, "off") or weights != "float32":
        return weights
    return autocast


@contextlib.contextmanager
def precision(device: torch.device, weights: str, autocast: str | None) -> Iterator[None]:
    """The numeric mode of one forward pass on ``device``.

    With autocast on: ``torch.autocast`` in that dtype. Otherwise, float32 means float32:
    on CUDA, cuDNN's convolutions would run in TF32 by default (about 1e-3 from the CPU's
    result for wav2vec2's feature encoder), so TF32 is off while the pass runs
    (:func:`ieee_float32`).
    """
    import torch

    if autocast not in (None, "off") and weights == "float32":
        if autocast == "float16" and device.type == "cpu":
            raise EncoderError("autocast=float16 needs a GPU; on the CPU use bfloat16")
        with torch.autocast(device.type, dtype=torch_dtype(autocast, device)):
            yield
        return
    if device.type != "cuda":
        yield
        return
    with ieee_float32():
        yield


_IEEE_LOCK = threading.Lock()
_ieee_users = 0
_ieee_before: tuple[str, str] | None = None


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """float32 matrix products and convolutions in full float32 (no TF32) while any
    thread is inside. torch's flags are process-wide: the first thread in sets them, the
    last one out puts back what was there, so concurrent passes (``serve`` runs several)
    all run in full float32, and other code sees its own setting once none runs."""
    global _ieee_users, _ieee_before
    import torch

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    with _IEEE_LOCK:
        if _ieee_users == 0:
            _ieee_before = (matmul.fp32_precision, conv.fp32_precision)
            matmul.fp32_precision = conv.fp32_precision = "ieee"
        _ieee_users += 1
    try:
        yield
    finally:
        with _IEEE_LOCK:
            _ieee_users -= 1
            if _ieee_users == 0 and _ieee_before is not None:
                matmul.fp32_precision, conv.fp32_precision = _ieee_before
                _ieee_before = None
