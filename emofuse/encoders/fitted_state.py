"""The fitted state of an offline text encoder on disk, and its hash; and
:class:`FittedStateEncoder`, the base of the encoders that keep such a state.

State is a dict of numpy arrays (saved as safetensors) and JSON-able values (saved in a
JSON manifest beside them, with the settings it was fitted with and its hash): no pickle,
so a bundle from someone else can be loaded without running their code. The files are
``<name>.safetensors`` and ``<name>.json`` with ``-`` in the encoder name as ``_``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emofuse.encoders.base import Encoder, EncoderError

_MANIFEST_KEYS = ("format", "encoder", "settings", "state_fingerprint")


def state_hash(settings: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """16 hex digits naming the settings and every array (dtype, shape, bytes) and value."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for key in sorted(state):
        value = state[key]
        digest.update(key.encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype.str, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(json.dumps(value, ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    stem = name.replace("-", "_")
    return directory / f"{stem}.json", directory / f"{stem}.safetensors"


def save_fitted_state(
    directory: str | Path,
    state: Mapping[str, Any],
    *,
    name: str,
    settings: Mapping[str, Any],
    fingerprint: str,
    format_version: int = 1,
) -> None:
    """Write ``state`` of the encoder ``name`` fitted with ``settings`` into ``directory``."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, arrays_path = _paths(directory, name)
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}
    values = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    save_file(arrays, str(arrays_path))
    manifest = {
        "format": format_version,
        "encoder": name,
        "settings": dict(settings),
        "state_fingerprint": fingerprint,
        **values,
    }
    json_path.write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")


def load_fitted_state(
    directory: str | Path,
    *,
    name: str,
    settings: Mapping[str, Any],
    format_version: int = 1,
) -> tuple[dict[str, Any], str]:
    """``(state, recorded fingerprint)`` from ``directory``; an error naming the file when
    it is missing, unreadable, of another encoder or format, or fitted with other settings.
    The caller compares the recorded fingerprint with :func:`state_hash` of what it loaded."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    json_path, arrays_path = _paths(directory, name)
    for path in (json_path, arrays_path):
        if not path.is_file():
            raise EncoderError(f"{path}: missing (is {directory} a {name} state directory?)")
    try:
        manifest = json.loads(json_path.read_text("utf-8"))
    except (ValueError, OSError) as error:
        raise EncoderError(
            f"{json_path}: unreadable {name} state ({_first_line(error)})"
        ) from error
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, ValueError, OSError) as error:
        # SafetensorError (a damaged header, a truncated file) is not a ValueError.
        raise EncoderError(
            f"{arrays_path}: unreadable {name} state (corrupt safetensors: "
            f"{_first_line(error)}); refit the encoder or restore the file"
        ) from error
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != format_version
        or manifest.get("encoder") != name
        or not isinstance(manifest.get("settings"), dict)
    ):
        raise EncoderError(f"{json_path}: not a {name} state of format {format_version}")
    if manifest["settings"] != dict(settings):
        raise EncoderError(
            f"{json_path}: state was fitted with settings {manifest['settings']}, "
            f"but this encoder has {dict(settings)}"
        )
    state = {k: v for k, v in manifest.items() if k not in _MANIFEST_KEYS}
    state.update(arrays)
    return state, str(manifest.get("state_fingerprint", ""))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class FittedStateEncoder(Encoder):
    """An encoder fitted on training text whose state is a dict of arrays and JSON values.

    Subclasses hold their options in ``settings`` (a dataclass with ``to_options()``, the
    options that differ from the defaults as a spec spells them), fill the state in
    ``fit`` through :meth:`_set_state`, and get from here the spec, the state fingerprint
    (:func:`state_hash` of settings and state) and the state's files."""

    needs_fit = True
    #: The version of the state's files; a state of another version is refused.
    state_format: ClassVar[int] = 1
    settings: Any
    _state: dict[str, Any] | None = None
    _state_hash: str = ""

    @property
    def spec(self) -> str:
        options = self.settings.to_options()
        return self.name + (
            "?" + "&".join(f"{k}={v}" for k, v in sorted(options.items())) if options else ""
        )

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    def state_fingerprint(self) -> str:
        return self._state_hash

    def save_state(self, directory: str | Path) -> None:
        if self._state is None:
            raise EncoderError(f"{self.name}: nothing to save, the encoder is not fitted")
        save_fitted_state(
            directory,
            self._state,
            name=self.name,
            settings=self._settings_json(),
            fingerprint=self._state_hash,
            format_version=self.state_format,
        )

    def load_state(self, directory: str | Path) -> None:
        state, recorded = load_fitted_state(
            directory,
            name=self.name,
            settings=self._settings_json(),
            format_version=self.state_format,
        )
        self._set_state(state)
        if self._state_hash != recorded:
            self._clear_state()
            raise EncoderError(
                f"{directory}: {self.name} state does not match its fingerprint (corrupt?)"
            )

    def _settings_json(self) -> dict[str, Any]:
        """The settings as they are recorded with the state (tuples as lists)."""
        return json.loads(json.dumps(asdict(self.settings)))

    def _set_state(self, state: dict[str, Any]) -> None:
        self._state = state
        self._state_hash = state_hash(self._settings_json(), state)

    def _clear_state(self) -> None:
        self._state, self._state_hash = None, ""
