"""What a bundle records about how it was made, and what differs now.

At saving, each encoder is recorded (spec, name, fingerprint, width, config, fitted-state
fingerprint, per part) with the versions of the packages that decide what it computes.
At loading, an encoder rebuilt from its spec must give the recorded fingerprint; when it
does not, :func:`what_differs` and :func:`version_hint` say why, in words.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from typing import Any

from emofuse.encoders.base import Encoder

#: Packages whose versions are recorded (they decide what the encoders compute).
VERSIONED_PACKAGES = (
    "emofuse", "torch", "transformers", "scikit-learn", "numpy", "opensmile",
    "resemblyzer", "kiwipiepy", "safetensors", "soxr", "soundfile",
)  # fmt: skip


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def encoder_record(encoder: Encoder) -> dict[str, Any]:
    """The ``config.json`` entry of an encoder (its parts included)."""
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


def json_safe(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, odd objects as strings)."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


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
    if recorded != current and json_safe(recorded) != json_safe(current):
        return [f"{where}: bundle {recorded!r}, now {current!r}"]
    return []


def what_differs(recorded: dict, encoder: Encoder) -> list[str]:
    """Why ``encoder`` (rebuilt now) does not match its ``recorded`` entry, one item each."""
    now = encoder_record(encoder)
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


def version_hint(versions: Mapping[str, str | None]) -> str:
    """The recorded package versions that changed since training (or all recorded)."""
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
