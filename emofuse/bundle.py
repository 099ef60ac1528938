"""A trained model as a folder a person can read: ``config.json`` says which encoders
(spec, fingerprint, width), labels and settings it expects; ``model.safetensors`` holds
the head and the standardiser; ``encoders/<modality>/state/`` holds fitted encoder state
(e.g. the TF-IDF vocabulary); ``train_ids.txt`` lists the training clips.

Loading needs none of the training data. Encoders are rebuilt from their spec on first
use and must reproduce the recorded fingerprint: a vector from a different encoder would
give confident nonsense, so a mismatch is refused with what differs.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from emofuse.encoders.base import Encoder, EncoderError
from emofuse.model import FusionHead, Standardizer, modalities_of
from emofuse.train import TrainedHead

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
TEXT_WAYS_OUT = "pass --text '...' or --asr vosk (Python: texts=[...] or asr=build_asr('vosk'))"


class BundleError(ValueError):
    """A bundle that cannot be saved, loaded or used as asked; the message says why."""


class Transcriber(Protocol):
    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> str: ...


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    #: The text the model read (given or transcribed); None when it reads no text.
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


AudioInput = str | Path | tuple[np.ndarray, int]


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
) -> Path:
    """Write a bundle folder (replacing an older bundle there) and return its path.

    ``provenance`` is stored as given, except a ``train_ids`` list, which goes to
    ``train_ids.txt`` and is referenced from the config. ``embed_models`` maps a modality
    to a model directory its encoder spec points at (a fine-tuned checkpoint): the
    directory is copied to ``encoders/<modality>/model`` and the spec made relative to
    the bundle, so the bundle can be moved.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    needed = modalities_of(modality)
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
    if out.exists() and any(out.iterdir()) and not (out / CONFIG_FILE).exists():
        raise BundleError(f"{out}: exists and is not an emofuse bundle; refusing to overwrite it")

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

        save_file(trained.state_dict(), str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        config = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "labels": list(labels),
            "modality": modality,
            "input_dims": trained.input_dims,
            "head": trained.head.hparams(),
            "weights": WEIGHTS_FILE,
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
            "versions": package_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / CONFIG_FILE).write_text(
            json.dumps(_json_safe(config), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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


class Bundle:
    """A saved model: labels, modality, head, and (lazily) its encoders."""

    def __init__(self, path: Path, config: dict, head: FusionHead, standardizer: Standardizer):
        self.path = path
        self.config = config
        self.head = head.eval()
        self.standardizer = standardizer
        self._encoders: dict[str, Encoder] = {}

    # -- loading
    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        from safetensors import SafetensorError
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
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as err:
            raise BundleError(f"{weights}: unreadable weights ({err})") from err
        try:
            head = FusionHead.from_hparams(config["head"])
            head.load_state_dict(
                {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
            )
            standardizer = Standardizer(
                head.input_dim, float(config.get("standardizer", {}).get("std_floor", 1e-5))
            )
            standardizer.load_state_dict(
                {
                    k[len("standardizer.") :]: v
                    for k, v in tensors.items()
                    if k.startswith("standardizer.")
                }
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
        return cls(path, config, head, standardizer)

    # -- what it is
    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def modality(self) -> str:
        return self.config["modality"]

    @property
    def modalities(self) -> tuple[str, ...]:
        return modalities_of(self.modality)

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
        blocks, rows = [], None
        for m in self.modalities:
            if m not in features or features[m] is None:
                raise BundleError(f"{self.path}: a {self.modality} bundle needs {m} features")
            block = np.asarray(features[m], dtype=np.float32)
            if block.ndim == 1:
                block = block[None, :]
            if block.ndim != 2 or block.shape[1] != self.input_dims[m]:
                raise BundleError(
                    f"{self.path}: {m} features have shape {block.shape}; the bundle's {m} "
                    f"encoder {self.encoder_spec(m)!r} gives {self.input_dims[m]} values per clip"
                )
            if rows is not None and block.shape[0] != rows:
                raise BundleError(f"speech has {rows} rows but text has {block.shape[0]}")
            if not np.isfinite(block).all():
                raise BundleError(f"{m} features contain NaN or infinite values")
            rows = block.shape[0]
            blocks.append(block)
        x = torch.from_numpy(np.ascontiguousarray(np.hstack(blocks)))
        with torch.no_grad():
            return torch.softmax(self.head(self.standardizer(x)), dim=1).numpy()

    def load_waveform(
        self, item: AudioInput, sample_rate_hz: int, *, name: str | None = None
    ) -> np.ndarray:
        """A float32 mono waveform at ``sample_rate_hz`` from a path or (waveform, rate)."""
        from emofuse.audio import AudioError, load_audio

        if isinstance(item, str | Path):
            return load_audio(item, sample_rate_hz)
        name = name or "waveform"
        try:
            wave, rate = item
        except (TypeError, ValueError) as err:
            raise AudioError(
                f"{name}: expected a file path or a (waveform, sample_rate_hz) pair"
            ) from err
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:  # (samples, channels) as soundfile gives it
            wave = wave.mean(axis=1)
        if wave.ndim != 1 or wave.size == 0:
            raise AudioError(f"{name}: expected a non-empty mono waveform, got shape {wave.shape}")
        if not np.isfinite(wave).all():
            raise AudioError(f"{name}: audio contains NaN or infinite samples")
        if int(rate) <= 0:
            raise AudioError(f"{name}: sample rate {rate} Hz")
        if int(rate) != sample_rate_hz:
            import soxr

            wave = soxr.resample(wave, int(rate), sample_rate_hz, quality="HQ").astype(np.float32)
        return np.ascontiguousarray(wave)

    def predict(
        self,
        audio: Sequence[AudioInput] | None,
        texts: Sequence[str | None] | None = None,
        *,
        asr: Transcriber | None = None,
        batch_size: int = 16,
    ) -> list[Prediction]:
        """Predict the emotion of each clip.

        ``audio``: file paths or (waveform, sample_rate_hz) pairs (may be None for a
        text-only bundle given texts). ``texts``: one transcript per clip (None/'' for
        unknown). A bundle that reads text and is given none uses ``asr`` when given,
        otherwise refuses. Speech-only bundles ignore ``texts``.
        """
        from emofuse.audio import AudioError

        audio = list(audio) if audio is not None else None
        texts = list(texts) if texts is not None else None
        if audio is not None and texts is not None and len(audio) != len(texts):
            raise BundleError(f"{len(audio)} audio clips but {len(texts)} texts")
        n = len(audio) if audio is not None else len(texts or [])
        if n == 0:
            return []
        names = [_item_name(audio[i], i) if audio is not None else f"text {i}" for i in range(n)]
        if self.needs_audio and audio is None:
            raise BundleError(f"{self.path}: a {self.modality} bundle needs audio")

        waves: list[np.ndarray | None] = [None] * n
        rate = self.encoder("speech").sample_rate_hz if self.needs_audio else 16_000
        if self.needs_audio:
            waves = [self.load_waveform(audio[i], rate, name=names[i]) for i in range(n)]

        used_texts: list[str | None] = [None] * n
        warnings: list[list[str]] = [[] for _ in range(n)]
        if self.needs_text:
            for i in range(n):
                given = texts[i] if texts is not None else None
                if given is not None and str(given).strip():
                    used_texts[i] = str(given)
                    continue
                if asr is None or audio is None or audio[i] is None:
                    raise BundleError(
                        f"{names[i]}: this bundle reads text ({self.encoder_spec('text')!r}) "
                        f"and none was given: {TEXT_WAYS_OUT}"
                    )
                if waves[i] is None:
                    waves[i] = self.load_waveform(audio[i], rate, name=names[i])
                try:
                    used_texts[i] = asr.transcribe(waves[i], rate)
                except AudioError:
                    raise
                except Exception as err:  # an ASR failure names the clip it failed on
                    raise BundleError(f"{names[i]}: speech recognition failed ({err})") from err
                if not used_texts[i].strip():
                    warnings[i].append(
                        "speech recognition heard no words: the text branch saw an empty "
                        "transcript, so this prediction rests on the audio alone"
                    )

        features: dict[str, np.ndarray] = {}
        if self.needs_audio:
            features["speech"] = _encode(self.encoder("speech"), waves, batch_size)
        if self.needs_text:
            features["text"] = _encode(self.encoder("text"), used_texts, batch_size)
        probs = self.predict_features(features)
        labels = self.labels
        return [
            Prediction(
                label=labels[int(row.argmax())],
                probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
                text=used_texts[i],
                extra={"warnings": warnings[i]} if warnings[i] else {},
            )
            for i, row in enumerate(probs)
        ]


def _encode(encoder: Encoder, items: Sequence, batch_size: int) -> np.ndarray:
    try:
        out = [
            encoder.encode(list(items[i : i + batch_size]))
            for i in range(0, len(items), batch_size)
        ]
    except EncoderError as err:  # a clip the encoder cannot read: the caller's input problem
        raise BundleError(f"the {encoder.modality} encoder {encoder.spec!r} failed: {err}") from err
    return np.vstack(out).astype(np.float32)


def _item_name(item: AudioInput, index: int) -> str:
    return str(item) if isinstance(item, str | Path) else f"clip {index}"


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


def load_bundle(path: str | Path) -> Bundle:
    return Bundle.load(path)


__all__ = [
    "Bundle",
    "BundleError",
    "Prediction",
    "Transcriber",
    "load_bundle",
    "package_versions",
    "save_bundle",
]
