"""Speech and text encoders behind one small interface (see base.py)."""

from emofuse.encoders.base import ConcatEncoder, Encoder, EncoderError, stable_hash
from emofuse.encoders.registry import (
    HF_SPEECH,
    HF_TEXT,
    OFFLINE_SPEECH,
    OFFLINE_TEXT,
    available_encoders,
    build_encoder,
    register_encoder,
)

__all__ = [
    "HF_SPEECH",
    "HF_TEXT",
    "OFFLINE_SPEECH",
    "OFFLINE_TEXT",
    "ConcatEncoder",
    "Encoder",
    "EncoderError",
    "available_encoders",
    "build_encoder",
    "register_encoder",
    "stable_hash",
]
