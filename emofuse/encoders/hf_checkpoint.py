"""A Hugging Face checkpoint: finding it (hub name or local directory) with a clear error
when it cannot be had, identifying its weights for fingerprints, and loading its config
and model (a loaded model is shared while in use).

Heavy libraries (torch, transformers) are imported inside functions so that importing
this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emofuse.encoders.base import EncoderError

if TYPE_CHECKING:
    import torch

#: Files read whole into a checkpoint's identity (small: configs and tokenizers).
_SMALL_FILE_BYTES = 16 * 1024 * 1024
#: Weights files are identified by their size plus three 1 MiB samples (start, middle,
#: end): cheap for a 1.2 GB checkpoint, and any retrained model differs in them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_SAMPLE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``ref`` is what from_pretrained gets (a hub name or an
    absolute directory), ``requested`` what the user wrote (an alias, a relative path)."""

    requested: str
    ref: str
    is_dir: bool

    @property
    def display_name(self) -> str:
        """A portable name for configs: the hub name, or the directory's own name, not its
        path (copies of a checkpoint in same-named folders on two machines share a
        fingerprint; the weights themselves are identified by checkpoint_identity)."""
        return Path(self.ref).name if self.is_dir else self.ref


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")  # Windows drive
    )


def resolve_source(name: str, aliases: Mapping[str, str] | None = None) -> ModelSource:
    """Turn a user's model name into a :class:`ModelSource`.

    An existing directory always wins (a local folder called ``kobert`` is used as is);
    otherwise an alias maps to its hub name; anything that looks like a path but is not
    a directory is an error here, not a confusing hub lookup.
    """
    name = name.strip()
    if not name:
        raise EncoderError("empty model name")
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(requested=name, ref=str(path.resolve()), is_dir=True)
    if path.exists():
        raise EncoderError(
            f"{name}: is a file, not a model directory (pass the folder that holds config.json)"
        )
    if aliases and name in aliases:
        return ModelSource(requested=name, ref=aliases[name], is_dir=False)
    if _looks_like_path(name):
        raise EncoderError(f"{name}: no such model directory")
    return ModelSource(requested=name, ref=name, is_dir=False)


def _error_chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        chain.append(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return chain


def explain_load_error(source: ModelSource, error: BaseException) -> EncoderError:
    """A one-paragraph error for a model that could not be loaded, instead of a trace
    from deep inside huggingface_hub."""
    name = source.requested
    kinds = {type(e).__name__ for e in _error_chain(error)}
    if source.is_dir:
        return EncoderError(
            f"could not load the model in {source.ref}: {error} (is it a folder written by "
            "save_pretrained, with config.json and the weights?)"
        )
    if kinds & {"RepositoryNotFoundError", "GatedRepoError"}:
        return EncoderError(
            f"could not load {name!r}: no such model on the Hugging Face hub, or it is "
            "private or gated (check the name; log in with `hf auth login` for gated "
            "models), or pass a local directory"
        )
    if (
        kinds
        & {
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "ConnectError",
            "ConnectionError",
            "TimeoutException",
            "gaierror",
        }
        or "couldn't connect" in str(error).lower()
    ):
        return EncoderError(
            f"could not load {name!r}: no network access to the Hugging Face hub and no "
            "local copy; pass a local directory instead (a folder with config.json and the "
            f"weights, e.g. from `hf download {source.ref} --local-dir DIR` on a machine "
            "with network, or save_pretrained), or fill the hub cache (HF_HOME) first"
        )
    if kinds & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return EncoderError(f"could not load {name!r}: the hub repository lacks a file: {error}")
    return EncoderError(f"could not load {name!r}: {type(error).__name__}: {error}")


@contextlib.contextmanager
def hub_errors(source: ModelSource) -> Iterator[None]:
    """Translate failures while fetching or loading ``source`` into an EncoderError."""
    try:
        yield
    except EncoderError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise explain_load_error(source, error) from error


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars while loading (e.g. the unused quantizer weights of
    a wav2vec2 pre-training checkpoint), which read like failures but are not."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()  # "Loading weights" bars: loading is not long work
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def find_file(source: ModelSource, filename: str, *, required: bool = True) -> Path | None:
    """A file of the checkpoint as a local path (downloading it from the hub if needed)."""
    if source.is_dir:
        path = Path(source.ref) / filename
        if path.is_file():
            return path
        if required:
            raise EncoderError(f"{source.ref}: no {filename} in this model directory")
        return None
    from transformers.utils.hub import cached_file

    # Asked for with required=False, a file that is neither on the hub nor cached (when
    # offline) comes back as None; required files raise, and hub_errors explains why.
    with hub_errors(source):
        found = cached_file(source.ref, filename, _raise_exceptions_for_missing_entries=required)
    if found is None:
        if required:
            raise EncoderError(
                f"could not load {source.requested!r}: no {filename} in the repository"
            )
        return None
    return Path(found)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}:".encode())
    with path.open("rb") as handle:
        if path.suffix in _WEIGHT_SUFFIXES and size > 3 * _SAMPLE_BYTES:
            for offset in (0, size // 2, size - _SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES))
        else:
            digest.update(handle.read())
    return digest.hexdigest()


def directory_identity(directory: Path) -> str:
    """Hash of a model directory's content: small files whole, weights sampled. A
    different checkpoint saved at the same path gets a different identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if path.name.startswith("."):
            continue
        if path.suffix in _WEIGHT_SUFFIXES or path.stat().st_size <= _SMALL_FILE_BYTES:
            digest.update(_file_digest(path).encode())
    return digest.hexdigest()[:16]


def checkpoint_identity(source: ModelSource) -> str:
    """What the fingerprint records about the weights: the directory's content hash, or
    for a hub model the snapshot's commit plus its config.json hash."""
    if source.is_dir:
        return directory_identity(Path(source.ref))
    config_path = find_file(source, "config.json")
    assert config_path is not None
    config_hash = hashlib.sha256(config_path.read_bytes()).hexdigest()[:16]
    parent = config_path.parent
    if parent.parent.name == "snapshots":
        return f"{parent.name}:{config_hash}"
    return directory_identity(parent)


def library_version() -> str:
    """The transformers major version, recorded in configs: what a layer index means
    changed between majors (see LayerChoice), so vectors may too. Read from the installed
    package's metadata: a fingerprint does not import transformers (seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "transformers " + version("transformers").split(".")[0]
    except PackageNotFoundError:  # a source checkout on sys.path without metadata
        import transformers

        return "transformers " + transformers.__version__.split(".")[0]


#: Loaded models shared between encoders that differ only in layer, pooling etc. (an
#: experiment grid over layers loads a 1.2 GB checkpoint once); freed with the last user.
_LOADED: weakref.WeakValueDictionary[tuple[str, ...], Any] = weakref.WeakValueDictionary()


def load_model(source: ModelSource, dtype: torch.dtype, device: torch.device) -> Any:
    """``AutoModel.from_pretrained`` in eval mode on ``device``, shared while in use. On
    an accelerator the weights are read straight onto it (``device_map``), never built in
    host memory first and copied."""
    identity = directory_identity(Path(source.ref)) if source.is_dir else ""
    key = (source.ref, identity, str(dtype), str(device))
    model = _LOADED.get(key)
    if model is None:
        placement = {"device_map": {"": str(device)}} if device.type != "cpu" else {}
        model = load_pretrained(source, "AutoModel", dtype=dtype, **placement)
        model = model.to(device).eval()  # a no-op where device_map placed it
        _LOADED[key] = model
    return model


def load_pretrained(source: ModelSource, auto_class: str, **kwargs: Any) -> Any:
    """``transformers.<auto_class>.from_pretrained(source)`` (AutoConfig, AutoTokenizer,
    AutoFeatureExtractor, AutoModel), quietly and with a clear error when it fails."""
    import transformers

    with hub_errors(source), quiet_transformers():
        return getattr(transformers, auto_class).from_pretrained(source.ref, **kwargs)


def load_config(source: ModelSource) -> Any:
    """The checkpoint's ``AutoConfig``."""
    # config.json first: a hub name that cannot be fetched fails here, through
    # huggingface_hub's own errors, before any loader hides the cause.
    find_file(source, "config.json")
    return load_pretrained(source, "AutoConfig")
