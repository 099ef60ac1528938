"""Writing a bundle: :func:`save_bundle` checks that the head, labels and encoders fit
together, writes everything into a hidden folder beside the target (weights with their
checksum, ``config.json``, encoder state, ``train_ids.txt``, fine-tuned models copied in)
and swaps it in at the end, so a crash never leaves a half-written bundle.
:func:`check_bundle_target` refuses, before any training, a target that is not an older
bundle."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from emofuse.bundle.layout import (
    BUNDLE_PLACEHOLDER,
    CONFIG_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_WITHOUT_CLIP,
    SPEAKER_NORM_PREFIX,
    TRAIN_IDS_FILE,
    WEIGHTS_FILE,
    BundleError,
    file_sha256,
)
from emofuse.bundle.records import encoder_record, json_safe, package_versions
from emofuse.encoders.base import Encoder
from emofuse.head.train import TrainedHead
from emofuse.modalities import inputs_of
from emofuse.outputs import write_bytes


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
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a bundle folder (replacing an older bundle there) and return its path.

    Everything is written into a hidden folder beside ``out_dir`` first, so a failed write
    (a full disk) leaves the older bundle as it was and raises one ``OSError`` naming
    ``out_dir``. ``write_extra(folder)`` writes more files into the bundle before it is put
    in place (the training's ``evaluation/``).

    ``trained.temperature`` (1.0: none) is stored and applied at prediction.
    ``modality_heads`` ({"speech": head, "text": head}, ``both`` bundles only) are stored
    in the same weights file under ``<modality>_head.`` / ``<modality>_standardizer.``.

    ``provenance`` is stored as given, except a ``train_ids`` list, which goes to
    ``train_ids.txt`` and is referenced from the config. ``embed_models`` maps a modality
    to a model directory its encoder spec points at (a fine-tuned checkpoint): the
    directory is copied to ``encoders/<modality>/model`` and the spec made relative to
    the bundle, so the bundle can be moved.
    """
    from safetensors.torch import save

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
            record = encoder_record(encoders[m])
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
        norm = getattr(trained, "speaker_norm", None)
        if norm is not None:  # covered by weights_sha256 like the head
            tensors.update(speaker_norm_tensors(norm))
        weights = save(
            tensors, metadata={"format": FORMAT_NAME, "labels": json.dumps(list(labels))}
        )
        write_bytes(tmp / WEIGHTS_FILE, weights)  # a full disk: an OSError, not a Rust error
        config = {
            "format": FORMAT_NAME,
            "format_version": (
                FORMAT_VERSION
                if trained.standardizer.limit is not None
                else FORMAT_VERSION_WITHOUT_CLIP
            ),
            "labels": list(labels),
            "modality": modality,
            "input_dims": trained.input_dims,
            "head": trained.head.hparams(),
            "temperature": float(trained.temperature),
            "weights": WEIGHTS_FILE,
            "weights_sha256": file_sha256(tmp / WEIGHTS_FILE),
            "standardizer": {
                "file": WEIGHTS_FILE,
                "keys": ["standardizer.mean", "standardizer.std"],
                "std_floor": trained.standardizer.std_floor,
                "limit": trained.standardizer.limit,
            },
            "encoders": encoder_records,
            "training": {
                "config": trained.config.to_dict(),
                "best_epoch": trained.best_epoch,
                "history": trained.history,
            },
            "metrics": metrics,
            "provenance": provenance,
            **({"speaker_norm": norm.meta()} if norm is not None else {}),
            **({"selection": trained.selection} if getattr(trained, "selection", None) else {}),
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
            json.dumps(json_safe(config), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        if write_extra is not None:
            write_extra(tmp)
        _swap_in(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = _os_error(err)
        if failed is None:
            raise
        kept = "the bundle there is unchanged" if out.exists() else "nothing was written"
        raise OSError(
            failed.errno, f"{failed.strerror or failed} while writing the bundle; {kept}", str(out)
        ) from err
    return out


def speaker_norm_tensors(norm) -> dict:
    """A :class:`~emofuse.head.speaker_norm.SpeakerNorm`'s arrays as tensors under
    :data:`SPEAKER_NORM_PREFIX` (its meta goes into config.json)."""
    import torch

    return {
        f"{SPEAKER_NORM_PREFIX}{k}": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
        for k, v in norm.arrays().items()
    }


def _os_error(err: BaseException) -> OSError | None:
    """``err`` as an OSError: itself, or a library's error that reports one in its text
    (safetensors: "... (os error 28)"); None for anything else."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"\(os error (\d+)\)", str(err))
    if found is None or not isinstance(err, Exception):
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


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
