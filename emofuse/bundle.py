"""A trained model as a folder a person can read: ``config.json`` says which encoders
(spec, fingerprint, width), labels and settings it expects; ``model.safetensors`` holds
the head and the standardiser; ``encoders/<modality>/state/`` holds fitted encoder state
(e.g. the TF-IDF vocabulary); ``train_ids.txt`` lists the training clips.

Loading needs none of the training data. Encoders are rebuilt from their spec on first
use and must reproduce the recorded fingerprint: a vector from a different encoder would
give confident nonsense, so a mismatch is refused with what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emofuse.encoders.base import Encoder, EncoderError
from emofuse.head.model import FusionHead, Standardizer
from emofuse.head.train import TrainedHead
from emofuse.modalities import inputs_of

if TYPE_CHECKING:
    from emofuse.asr import Transcriber
    from emofuse.audio import AudioSource

FORMAT_NAME = "emofuse-bundle"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_IDS_FILE = "train_ids.txt"
#: Stands for the bundle directory in specs of models stored inside the bundle.
BUNDLE_PLACEHOLDER = "{bundle}"
#: Packages whose versions are recorded (they decide what the encoders compute).
VERSIONED_PACKAGES = (
    "emofuse", "torch", "transformers", "scikit-learn", "numpy", "opensmile",
    "resemblyzer", "kiwipiepy", "safetensors", "soxr", "soundfile",
)  # fmt: skip


class BundleError(ValueError):
    """A bundle that cannot be saved, loaded or used as asked; the message says why."""


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    #: The text the model read (given or transcribed); None when it reads no text.
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``both`` bundles with single-modality heads: {"speech": {label: p}, "text": {...}}.
    by_modality: dict[str, dict[str, float]] | None = None
    #: Whether the speech-only and the text-only heads name the same label (None without).
    agree: bool | None = None
    #: Whether the top (fused) probability is below the ``min_confidence`` asked for
    #: (always False without one); ``label`` stays the most probable label either way.
    uncertain: bool = False


@dataclass
class ModalityHead:
    """A single-modality head stored beside a ``both`` bundle's fused head, trained on the
    same rows: it says what the voice alone, or the words alone, suggest."""

    head: FusionHead
    standardizer: Standardizer
    temperature: float = 1.0


# ----------------------------------------------------------------------------- saving


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _encoder_record(encoder: Encoder) -> dict[str, Any]:
    record: dict[str, Any] = {
        "spec": encoder.spec,
        "name": encoder.name,
        "fingerprint": encoder.fingerprint(),
        "dim": int(encoder.dim),
        "config": encoder.config(),
        "state_fingerprint": encoder.state_fingerprint(),
        "parts": [
            {
                "spec": part.spec,
                "name": part.name,
                "fingerprint": part.fingerprint(),
                "dim": int(part.dim),
                "config": part.config(),
                "state_fingerprint": part.state_fingerprint(),
            }
            for part in encoder.parts()
        ],
    }
    if encoder.modality == "speech":
        record["sample_rate_hz"] = int(encoder.sample_rate_hz)
    return record


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def save_bundle(
    out_dir: str | Path,
    trained: TrainedHead,
    *,
    labels: Sequence[str],
    modality: str,
    encoders: Mapping[str, Encoder],
    metrics: dict | None = None,
    provenance: dict | None = None,
    embed_models: Mapping[str, str | Path] | None = None,
    modality_heads: Mapping[str, TrainedHead] | None = None,
) -> Path:
    """Write a bundle folder (replacing an older bundle there) and return its path.

    ``trained.temperature`` (1.0: none) is stored and applied at prediction.
    ``modality_heads`` ({"speech": head, "text": head}, ``both`` bundles only) are stored
    in the same weights file under ``<modality>_head.`` / ``<modality>_standardizer.``.

    ``provenance`` is stored as given, except a ``train_ids`` list, which goes to
    ``train_ids.txt`` and is referenced from the config. ``embed_models`` maps a modality
    to a model directory its encoder spec points at (a fine-tuned checkpoint): the
    directory is copied to ``encoders/<modality>/model`` and the spec made relative to
    the bundle, so the bundle can be moved.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    needed = inputs_of(modality)
    if trained.modality != modality:
        raise BundleError(f"the head was trained on {trained.modality!r} inputs, not {modality!r}")
    if len(labels) != trained.head.n_classes:
        raise BundleError(f"{len(labels)} labels for a head with {trained.head.n_classes} classes")
    missing = [m for m in needed if m not in encoders]
    if missing:
        raise BundleError(f"a {modality!r} bundle needs a {' and '.join(missing)} encoder")
    for m in needed:
        if encoders[m].modality != m:
            raise BundleError(
                f"the {m} encoder {encoders[m].spec!r} is a {encoders[m].modality} encoder"
            )
        if encoders[m].dim != trained.input_dims[m]:
            raise BundleError(
                f"the {m} encoder {encoders[m].spec!r} gives {encoders[m].dim} values "
                f"but the head was trained on {trained.input_dims[m]}"
            )
    modality_heads = dict(modality_heads or {})
    if modality_heads and modality != "both":
        raise BundleError(f"single-modality heads go with a 'both' bundle, not {modality!r}")
    for m, extra in modality_heads.items():
        if m not in needed or extra.modality != m or extra.input_dims[m] != trained.input_dims[m]:
            raise BundleError(
                f"the {m}-only head reads {extra.input_dims}, not the fused head's {m} block"
            )
    check_bundle_target(out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        encoder_records = {}
        for m in needed:
            record = _encoder_record(encoders[m])
            state_dir = tmp / "encoders" / m / "state"
            encoders[m].save_state(state_dir)
            has_state = state_dir.exists() and any(state_dir.rglob("*"))
            record["state"] = state_dir.relative_to(tmp).as_posix() if has_state else None
            if embed_models and m in embed_models:
                _embed_model(record, Path(embed_models[m]), tmp, m)
            encoder_records[m] = record

        provenance = dict(provenance or {})
        train_ids = provenance.pop("train_ids", None)
        if train_ids is not None:
            (tmp / TRAIN_IDS_FILE).write_text(
                "".join(f"{i}\n" for i in train_ids), encoding="utf-8"
            )
            provenance["train_ids_file"] = TRAIN_IDS_FILE
            provenance["n_train_ids"] = len(train_ids)

        # The labels ride in the weights too: a config.json edited by hand (labels
        # reordered) is caught at load, as is a weights file changed after saving.
        tensors = trained.state_dict()
        for m, extra in modality_heads.items():
            tensors.update({f"{m}_{k}": v for k, v in extra.state_dict().items()})
        save_file(
            tensors, str(tmp / WEIGHTS_FILE),
            metadata={"format": FORMAT_NAME, "labels": json.dumps(list(labels))},
        )  # fmt: skip
        config = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "labels": list(labels),
            "modality": modality,
            "input_dims": trained.input_dims,
            "head": trained.head.hparams(),
            "temperature": float(trained.temperature),
            "weights": WEIGHTS_FILE,
            "weights_sha256": _sha256(tmp / WEIGHTS_FILE),
            "standardizer": {
                "file": WEIGHTS_FILE,
                "keys": ["standardizer.mean", "standardizer.std"],
                "std_floor": trained.standardizer.std_floor,
            },
            "encoders": encoder_records,
            "training": {
                "config": trained.config.to_dict(),
                "best_epoch": trained.best_epoch,
                "history": trained.history,
            },
            "metrics": metrics,
            "provenance": provenance,
            "modality_heads": {
                m: {
                    "head": extra.head.hparams(),
                    "temperature": float(extra.temperature),
                    "best_epoch": extra.best_epoch,
                }  # fmt: skip
                for m, extra in modality_heads.items()
            },
            "versions": package_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / CONFIG_FILE).write_text(
            json.dumps(_json_safe(config), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_bundle_target(out: Path) -> None:
    """Refuse to write a bundle where it would replace anything but an older bundle."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleError(f"{out}: exists and is a file, not a bundle folder; choose another -o")
    if not any(out.iterdir()):
        return
    try:
        config = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise BundleError(
            f"{out}: exists and is not an emofuse bundle; refusing to overwrite it "
            "(choose a new folder for the bundle)"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished bundle ``new`` at ``out``. An old bundle there is renamed aside
    first and removed only once the new one is in place, so a crash at any point leaves
    a complete bundle (old or new) at ``out``, never none. Only a folder that is an
    emofuse bundle is ever replaced (checked by the caller before training)."""
    if not out.exists():
        new.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)
        raise
    # Files a user put in the old bundle folder are theirs: carry them over.
    written = {entry.name for entry in out.iterdir()}
    for entry in old.iterdir():
        if entry.name not in written:
            entry.rename(out / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def _embed_model(record: dict, source: Path, bundle_tmp: Path, modality: str) -> None:
    if not source.is_dir():
        raise BundleError(f"{source}: no such model directory to embed in the bundle")
    relative = f"encoders/{modality}/model"
    shutil.copytree(source, bundle_tmp / relative)
    spec = record["spec"]
    for form in (str(source.resolve()), str(source)):
        spec = spec.replace(form, f"{BUNDLE_PLACEHOLDER}/{relative}")
    if BUNDLE_PLACEHOLDER not in spec:
        raise BundleError(f"the {modality} encoder spec {record['spec']!r} does not use {source}")
    record["spec"] = spec
    for part in record["parts"]:
        for form in (str(source.resolve()), str(source)):
            part["spec"] = part["spec"].replace(form, f"{BUNDLE_PLACEHOLDER}/{relative}")


# ----------------------------------------------------------------------------- loading


def _diff(recorded: Any, current: Any, where: str) -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current), key=str):
            if key not in current:
                out.append(f"{where}.{key} {recorded[key]!r} is gone")
            elif key not in recorded:
                out.append(f"{where}.{key} {current[key]!r} is new")
            else:
                out.extend(_diff(recorded[key], current[key], f"{where}.{key}"))
        return out
    if recorded != current and _json_safe(recorded) != _json_safe(current):
        return [f"{where}: bundle {recorded!r}, now {current!r}"]
    return []


def _what_differs(recorded: dict, encoder: Encoder) -> list[str]:
    now = _encoder_record(encoder)
    changes: list[str] = []
    if recorded["spec"] != now["spec"]:
        changes.append(f"spec: bundle {recorded['spec']!r}, now {now['spec']!r}")
    old_parts, new_parts = recorded.get("parts", []), now["parts"]
    if len(old_parts) != len(new_parts):
        changes.append(f"parts: bundle {len(old_parts)}, now {len(new_parts)}")
    for old, new in zip(old_parts, new_parts, strict=False):
        label = f"part {old['name']!r}" if len(old_parts) > 1 else "encoder"
        if old["fingerprint"] == new["fingerprint"]:
            continue
        changes.extend(f"{label} {c}" for c in _diff(old["config"], new["config"], "config"))
        if old["state_fingerprint"] != new["state_fingerprint"]:
            changes.append(
                f"{label} fitted state: bundle {old['state_fingerprint'] or 'none'}, "
                f"now {new['state_fingerprint'] or 'none'}"
            )
        if old["dim"] != new["dim"]:
            changes.append(f"{label} dim: bundle {old['dim']}, now {new['dim']}")
    if not changes:
        changes.append("name, modality or a setting outside the recorded config")
    return changes


def _load_head(
    tensors: Mapping[str, Any], prefix: str, hparams: Mapping, std_floor: float
) -> tuple[FusionHead, Standardizer]:
    """The head and standardiser stored under ``<prefix>head.`` / ``<prefix>standardizer.``."""
    head = FusionHead.from_hparams(hparams)
    head.load_state_dict(_block(tensors, f"{prefix}head."))
    standardizer = Standardizer(head.input_dim, std_floor)
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
    ):
        self.path = path
        self.config = config
        self.head = head.eval()
        self.standardizer = standardizer
        #: speech-only and text-only heads of a ``both`` bundle (empty when not stored)
        self.modality_heads = dict(modality_heads or {})
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
        if recorded is not None and _sha256(weights) != recorded:
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
        try:
            head, standardizer = _load_head(tensors, "", config["head"], std_floor)
            modality_heads = {
                m: ModalityHead(
                    *_load_head(tensors, f"{m}_", record["head"], std_floor),
                    float(record.get("temperature", 1.0)),
                )
                for m, record in (config.get("modality_heads") or {}).items()
            }
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
        return cls(path, config, head, standardizer, modality_heads)

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
            differs = "; ".join(_what_differs(record, encoder))
            versions = self.config.get("versions", {})
            raise BundleError(
                f"{self.path}: the {modality} encoder {record['spec']!r} rebuilt here has "
                f"fingerprint {now}, but the bundle was trained with {record['fingerprint']}. "
                f"What differs: {differs}. Its vectors would not mean what the head learned; "
                f"install the versions the bundle records ({_version_hint(versions)}) or retrain."
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
        from emofuse.head.score import ScoringError, probabilities_from_features

        try:
            return probabilities_from_features(self, features)
        except ScoringError as err:
            raise BundleError(f"{self.path}: {err}") from err

    def predict(
        self,
        audio: Sequence[AudioSource | None] | None,
        texts: Sequence[str | None] | None = None,
        *,
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
        """
        from emofuse.predict import PredictInput, PredictionEngine

        audio = list(audio) if audio is not None else None
        texts = list(texts) if texts is not None else None
        if audio is not None and texts is not None and len(audio) != len(texts):
            raise BundleError(f"{len(audio)} audio clips but {len(texts)} texts")
        n = len(audio) if audio is not None else len(texts or [])
        items = [
            PredictInput(
                audio[i] if audio is not None else None, texts[i] if texts is not None else None
            )
            for i in range(n)
        ]
        engine = PredictionEngine(
            self, asr=asr, batch_size=batch_size, min_confidence=min_confidence
        )
        return engine.predict(items)

    def timeline(self, path: str | Path, **options: Any) -> Any:
        """The emotion timeline of a long recording: :func:`emofuse.timeline.build_timeline`
        with this bundle (options: settings, asr, transcript, channels, progress,
        min_confidence)."""
        from emofuse.timeline import build_timeline

        return build_timeline(self, path, **options)


def _version_hint(versions: Mapping[str, str | None]) -> str:
    now = package_versions()
    changed = [
        f"{k} {v} (now {now.get(k)})"
        for k, v in versions.items()
        if k != "python" and v != now.get(k)
    ]
    if changed:
        return "changed since training: " + ", ".join(changed)
    recorded = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "python")
    return recorded or "none recorded"


__all__ = [
    "Bundle",
    "BundleError",
    "Prediction",
    "check_bundle_target",
    "package_versions",
    "save_bundle",
]
