"""A saved model, loaded: :class:`Bundle` reads a bundle folder (checking its format,
checksum and labels), holds the fused head (and a ``both`` bundle's speech-only and text-only
:class:`ModalityHead`), rebuilds its encoders from their specs on first use (refusing one
whose fingerprint differs from the recorded one, with what differs) and scores vectors.

Loading needs none of the training data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emofuse.bundle.layout import (
    BUNDLE_PLACEHOLDER,
    CONFIG_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    SPEAKER_NORM_PREFIX,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
)
from emofuse.bundle.records import version_hint, what_differs
from emofuse.encoders.base import Encoder, EncoderError
from emofuse.head.model import FusionHead, Standardizer
from emofuse.head.score import ScoringError, probabilities_from_features
from emofuse.head.speaker_norm import SpeakerNorm
from emofuse.modalities import inputs_of

if TYPE_CHECKING:
    from emofuse.asr import Transcriber
    from emofuse.audio import AudioSource
    from emofuse.bundle.prediction import Prediction
    from emofuse.head.speaker_stats import Moments


@dataclass
class ModalityHead:
    """A single-modality head stored beside a ``both`` bundle's fused head, trained on the
    same rows: it says what the voice alone, or the words alone, suggest."""

    head: FusionHead
    standardizer: Standardizer
    temperature: float = 1.0


def _load_head(
    tensors: Mapping[str, Any],
    prefix: str,
    hparams: Mapping,
    std_floor: float,
    limit: float | None,
) -> tuple[FusionHead, Standardizer]:
    """The head and standardiser stored under ``<prefix>head.`` / ``<prefix>standardizer.``
    (``limit``: the clip of standardised values; None in bundles saved before it)."""
    head = FusionHead.from_hparams(hparams)
    head.load_state_dict(_block(tensors, f"{prefix}head."))
    standardizer = Standardizer(head.input_dim, std_floor, limit)
    standardizer.load_state_dict(_block(tensors, f"{prefix}standardizer."))
    return head.eval(), standardizer


def _block(tensors: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class Bundle:
    """A saved model: labels, modality, head, and (lazily) its encoders."""

    def __init__(
        self,
        path: Path,
        config: dict,
        head: FusionHead,
        standardizer: Standardizer,
        modality_heads: Mapping[str, ModalityHead] | None = None,
        speaker_norm: SpeakerNorm | None = None,
    ):
        self.path = path
        self.config = config
        self.head = head.eval()
        self.standardizer = standardizer
        #: speech-only and text-only heads of a ``both`` bundle (empty when not stored)
        self.modality_heads = dict(modality_heads or {})
        #: speaker-adaptive normalisation of the speech block (None: the bundle does not
        #: adapt; bundles saved before it existed, the paper recipe, --finetune)
        self.speaker_norm = speaker_norm
        self._encoders: dict[str, Encoder] = {}

    # -- loading
    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.exists():
            raise BundleError(f"{path}: no such bundle directory")
        if not path.is_dir():
            raise BundleError(
                f"{path}: a bundle is a directory (made by `emofuse train`), not a file"
            )
        config_file = path / CONFIG_FILE
        if not config_file.exists():
            raise BundleError(f"{path}: not an emofuse bundle (no {CONFIG_FILE})")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{config_file}: broken JSON ({err})") from err
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise BundleError(
                f"{config_file}: not an emofuse bundle config (format != {FORMAT_NAME!r})"
            )
        version = config.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise BundleError(
                f"{config_file}: bundle format version {version!r}; this emofuse reads up to "
                f"{FORMAT_VERSION} (upgrade emofuse)"
            )
        for key in ("labels", "modality", "head", "encoders", "input_dims"):
            if key not in config:
                raise BundleError(f"{config_file}: missing field {key!r}")
        weights = path / config.get("weights", WEIGHTS_FILE)
        if not weights.exists():
            raise BundleError(f"{path}: missing weights file {weights.name}")
        recorded = config.get("weights_sha256")
        if recorded is not None and file_sha256(weights) != recorded:
            raise BundleError(
                f"{weights}: its contents differ from the checksum in {CONFIG_FILE} (the file "
                "was damaged or replaced after saving); restore it or retrain"
            )
        try:
            tensors = load_file(str(weights))
            with safe_open(str(weights), "pt") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as err:
            raise BundleError(f"{weights}: unreadable weights ({err})") from err
        if "labels" in metadata and json.loads(metadata["labels"]) != config["labels"]:
            raise BundleError(
                f"{config_file}: labels {config['labels']} differ from those the weights were "
                f"trained with ({json.loads(metadata['labels'])}); was {CONFIG_FILE} edited? "
                "Restore it or retrain"
            )
        std_floor = float(config.get("standardizer", {}).get("std_floor", 1e-5))
        limit = config.get("standardizer", {}).get("limit")
        limit = None if limit is None else float(limit)
        try:
            head, standardizer = _load_head(tensors, "", config["head"], std_floor, limit)
            modality_heads = {
                m: ModalityHead(
                    *_load_head(tensors, f"{m}_", record["head"], std_floor, limit),
                    float(record.get("temperature", 1.0)),
                )
                for m, record in (config.get("modality_heads") or {}).items()
            }
            speaker_norm = None
            if config.get("speaker_norm"):
                arrays = _block(tensors, SPEAKER_NORM_PREFIX)
                speaker_norm = SpeakerNorm.from_arrays(
                    config["speaker_norm"], {k: v.numpy() for k, v in arrays.items()}
                )
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise BundleError(f"{weights}: weights do not match {CONFIG_FILE} ({err})") from err
        if len(config["labels"]) != head.n_classes:
            raise BundleError(
                f"{config_file}: {len(config['labels'])} labels for {head.n_classes} outputs"
            )
        if head.modality != config["modality"]:
            raise BundleError(
                f"{config_file}: modality {config['modality']!r} but the head reads {head.modality!r}"
            )
        return cls(path, config, head, standardizer, modality_heads, speaker_norm)

    # -- what it is
    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def modality(self) -> str:
        return self.config["modality"]

    @property
    def modalities(self) -> tuple[str, ...]:
        return inputs_of(self.modality)

    @property
    def needs_text(self) -> bool:
        return "text" in self.modalities

    @property
    def needs_audio(self) -> bool:
        return "speech" in self.modalities

    @property
    def input_dims(self) -> dict[str, int]:
        return dict(self.head.input_dims)

    @property
    def temperature(self) -> float:
        """Logits are divided by it before the softmax (1.0 when none was fitted)."""
        return float(self.config.get("temperature", 1.0))

    @property
    def metrics(self) -> dict | None:
        return self.config.get("metrics")

    def training_ids(self) -> set[str]:
        """Ids of the clips the head was trained on (empty when not recorded)."""
        name = self.config.get("provenance", {}).get("train_ids_file")
        path = self.path / name if name else None
        if path is None or not path.exists():
            return set()
        return {line for line in path.read_text(encoding="utf-8").splitlines() if line}

    def encoder_spec(self, modality: str) -> str:
        """The spec that rebuilds the encoder (models stored in the bundle resolved)."""
        spec = self.config["encoders"][modality]["spec"]
        return spec.replace(BUNDLE_PLACEHOLDER, str(self.path.resolve()))

    def describe(self) -> str:
        specs = ", ".join(f"{m} {self.encoder_spec(m)!r}" for m in self.modalities)
        line = f"{self.path}: {self.modality} model over {len(self.labels)} classes ({specs})"
        if self.metrics:
            line += f"; test UAR {self.metrics.get('uar', float('nan')):.3f}"
        return line

    # -- encoders
    def encoder(self, modality: str) -> Encoder:
        """The bundle's encoder for ``modality``, rebuilt and checked on first use."""
        if modality not in self.modalities:
            raise BundleError(f"{self.path}: a {self.modality} bundle has no {modality} encoder")
        if modality not in self._encoders:
            self._encoders[modality] = self._rebuild(modality)
        return self._encoders[modality]

    def encoders(self) -> dict[str, Encoder]:
        return {m: self.encoder(m) for m in self.modalities}

    def _rebuild(self, modality: str) -> Encoder:
        from emofuse.encoders.registry import build_encoder

        record = dict(self.config["encoders"][modality])
        record["spec"] = self.encoder_spec(modality)
        try:
            encoder = build_encoder(record["spec"], modality)
            if record.get("state"):
                encoder.load_state(self.path / record["state"])
        except EncoderError as err:
            raise BundleError(
                f"{self.path}: cannot rebuild the {modality} encoder {record['spec']!r}: {err}"
            ) from err
        now = encoder.fingerprint()
        if now != record["fingerprint"]:
            differs = "; ".join(what_differs(record, encoder))
            versions = self.config.get("versions", {})
            raise BundleError(
                f"{self.path}: the {modality} encoder {record['spec']!r} rebuilt here has "
                f"fingerprint {now}, but the bundle was trained with {record['fingerprint']}. "
                f"What differs: {differs}. Its vectors would not mean what the head learned; "
                f"install the versions the bundle records ({version_hint(versions)}) or retrain."
            )
        if encoder.dim != self.input_dims[modality]:
            raise BundleError(
                f"{self.path}: the {modality} encoder {record['spec']!r} gives {encoder.dim} "
                f"values but the head expects {self.input_dims[modality]}"
            )
        return encoder

    # -- prediction
    def predict_features(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probabilities (n, n_classes) from precomputed vectors, one matrix per modality."""
        try:
            return probabilities_from_features(self, features)
        except ScoringError as err:
            raise BundleError(f"{self.path}: {err}") from err

    def predict(
        self,
        audio: Sequence[AudioSource | None] | None,
        texts: Sequence[str | None] | None = None,
        *,
        speaker: str | Sequence[str | None] | None = None,
        speaker_stats: Mapping[str, Moments] | None = None,
        running_stats: MutableMapping[str, Moments] | None = None,
        asr: Transcriber | None = None,
        batch_size: int = 16,
        min_confidence: float | None = None,
    ) -> list[Prediction]:
        """Predict the emotion of each clip (through :class:`emofuse.predict.PredictionEngine`).

        ``audio``: file paths, bytes or (waveform, sample_rate_hz) pairs (may be None for a
        text-only bundle given texts). ``texts``: one transcript per clip (None/'' for
        unknown). A bundle that reads text and is given none uses ``asr`` when given,
        otherwise refuses. Speech-only bundles ignore ``texts``. ``min_confidence`` (in
        [0, 1]; None or 0: off) marks ``Prediction.uncertain`` when the top probability is
        below it.

        ``speaker``: one name for every clip, or one per clip (None/'' for none). A bundle
        that adapts to speakers (``self.speaker_norm``) normalises each clip by its
        speaker's statistics: those of that speaker's clips in this call, or
        ``speaker_stats`` (name -> :class:`~emofuse.head.speaker_stats.Moments`, used as
        given), or ``running_stats`` (updated in place: each clip is added before it is
        scored). ``Prediction.speaker_clips`` says how many clips they came from (None
        when the bundle does not adapt or no speaker was named).
        """
        # One of the two allowed upward imports (the layer contract lists it): the engine
        # lives above the bundle (emofuse.predict imports Bundle), so it is imported here,
        # on use, as a convenience for callers holding a bundle.
        from emofuse.predict import PredictInput, PredictionEngine

        audio = list(audio) if audio is not None else None
        texts = list(texts) if texts is not None else None
        if audio is not None and texts is not None and len(audio) != len(texts):
            raise BundleError(f"{len(audio)} audio clips but {len(texts)} texts")
        n = len(audio) if audio is not None else len(texts or [])
        if speaker is None or isinstance(speaker, str):
            speakers = [speaker] * n
        else:
            speakers = list(speaker)
            if len(speakers) != n:
                raise BundleError(f"{n} clips but {len(speakers)} speaker names")
        items = [
            PredictInput(
                audio[i] if audio is not None else None,
                texts[i] if texts is not None else None,
                speaker=speakers[i],
            )
            for i in range(n)
        ]
        engine = PredictionEngine(
            self, asr=asr, batch_size=batch_size, min_confidence=min_confidence
        )
        return engine.predict(items, speaker_stats=speaker_stats, running_stats=running_stats)

    def timeline(self, path: str | Path, **options: Any) -> Any:
        """The emotion timeline of a long recording: :func:`emofuse.timeline.build_timeline`
        with this bundle (options: settings, asr, transcript, channels, progress,
        min_confidence)."""
        # The other allowed upward import (listed in the layer contract): the timeline
        # lives above the bundle and takes it as an argument; imported here, on use.
        from emofuse.timeline import build_timeline

        return build_timeline(self, path, **options)
