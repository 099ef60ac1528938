"""Encoders by name: `build_encoder("egemaps+resemblyzer", "speech")`.

A spec is one or more parts joined by ``+``; each part is ``NAME`` or ``NAME?key=value&...``
where NAME is a registered encoder (``egemaps``, ``resemblyzer``, ``kiwi-sparse``,
``kiwi-tfidf``) or a
Hugging Face model (hub name or local directory, optional ``hf:`` prefix). Options are
passed to the encoder class as strings, e.g. ``facebook/wav2vec2-large-robust?layer=mean``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import parse_qsl

from emofuse.encoders.base import ConcatEncoder, Encoder, EncoderError
from emofuse.modalities import ENCODER_MODALITIES, SPEECH, TEXT

OFFLINE_SPEECH = "egemaps+resemblyzer"
#: The offline text default learns from the training labels (out-of-fold logistic-regression
#: scores on sparse TF-IDF; bench/kote_text_sizes.py); where vectors are needed before any
#: label may be used (spreading a sample over the text space), the unsupervised one.
OFFLINE_TEXT = "kiwi-sparse"
OFFLINE_TEXT_UNSUPERVISED = "kiwi-tfidf"
HF_SPEECH = "facebook/wav2vec2-large-robust"
HF_TEXT = "beomi/KcELECTRA-base-v2022"

Factory = Callable[[dict[str, str]], Encoder]

#: (modality, name) -> "module:factory". Modules import lazily: building eGeMAPS never
#: imports transformers.
_BUILTIN: dict[tuple[str, str], str] = {
    ("speech", "egemaps"): "emofuse.encoders.egemaps:build",
    ("speech", "resemblyzer"): "emofuse.encoders.voice_encoder:build",
    ("text", "kiwi-tfidf"): "emofuse.encoders.kiwi_tfidf:build",
    ("text", "kiwi-sparse"): "emofuse.encoders.kiwi_sparse:build",
}
_HF: dict[str, str] = {
    "speech": "emofuse.encoders.hf_speech:build",
    "text": "emofuse.encoders.hf_text:build",
}
_EXTRA: dict[tuple[str, str], Factory] = {}


def is_registered(modality: str, name: str) -> bool:
    """Whether ``name`` is a built-in or plug-in encoder of ``modality`` (not a Hugging
    Face model)."""
    return (modality, name) in _BUILTIN or (modality, name) in _EXTRA


def register_encoder(modality: str, name: str, factory: Factory) -> None:
    """Add an encoder under ``name`` (e.g. from a plug-in or a test)."""
    _EXTRA[(modality, name)] = factory


def available_encoders(modality: str) -> list[str]:
    names = {n for (m, n) in _BUILTIN if m == modality} | {n for (m, n) in _EXTRA if m == modality}
    return sorted(names) + ["<hugging face name or directory>"]


def _load(target: str) -> Factory:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_part(part: str) -> tuple[str, dict[str, str]]:
    name, _, query = part.strip().partition("?")
    if not name:
        raise EncoderError(f"empty encoder name in spec part {part!r}")
    return name, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))


def build_one(part: str, modality: str) -> Encoder:
    if modality not in ENCODER_MODALITIES:
        raise EncoderError(
            f"modality must be one of {', '.join(ENCODER_MODALITIES)}, not {modality!r}"
        )
    name, options = parse_part(part)
    if (modality, name) in _EXTRA:
        return _EXTRA[(modality, name)](options)
    if (modality, name) in _BUILTIN:
        return _load(_BUILTIN[(modality, name)])(options)
    other = TEXT if modality == SPEECH else SPEECH
    if (other, name) in _BUILTIN or (other, name) in _EXTRA:
        raise EncoderError(f"{name!r} is a {other} encoder, not a {modality} encoder")
    hf_name = name.removeprefix("hf:")
    return _load(_HF[modality])({"model": hf_name, **options})


def build_encoder(spec: str, modality: str) -> Encoder:
    """Build the encoder a spec names; several parts become a :class:`ConcatEncoder`."""
    parts = [p for p in spec.split("+") if p.strip()]
    if not parts:
        raise EncoderError(f"empty {modality} encoder spec {spec!r}")
    encoders = [build_one(p, modality) for p in parts]
    return encoders[0] if len(encoders) == 1 else ConcatEncoder(encoders)
