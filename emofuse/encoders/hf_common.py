"""What the Hugging Face speech and text encoders share: finding a checkpoint (hub name
or local directory) with a clear error when it cannot be had, identifying it for
fingerprints, device and dtype choice, layer selection and masked pooling, and
:class:`HFEncoder`, the base class that holds the checkpoint, its lazily loaded config
and model, and builds the spec and config from each encoder's own settings.

Heavy libraries (torch, transformers) are imported inside functions so that importing
this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from emofuse.encoders.base import Encoder, EncoderError
from emofuse.encoders.options import check_options

if TYPE_CHECKING:
    import torch

#: Layer choices: "last" (the model's ``last_hidden_state``), an int index into
#: ``hidden_states`` as transformers returns them (0 = the embeddings / feature-projection
#: output, N = the N-th transformer layer's output, negative counts from the end), or
#: "mean" (the mean of the N transformer layers' outputs, *excluding* the embeddings
#: output, which carries no context). For pre-norm models (wav2vec2-large-robust:
#: ``do_stable_layer_norm``) transformers 5 returns layer N *before* the encoder's final
#: layer norm, so layer N and "last" differ there; for post-norm models they agree.
LayerChoice = str | int

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}

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
    changed between majors (see LayerChoice), so vectors may too."""
    import transformers

    return "transformers " + transformers.__version__.split(".")[0]


#: Loaded models shared between encoders that differ only in layer, pooling etc. (an
#: experiment grid over layers loads a 1.2 GB checkpoint once); freed with the last user.
_LOADED: weakref.WeakValueDictionary[tuple[str, ...], Any] = weakref.WeakValueDictionary()


def load_model(source: ModelSource, dtype: torch.dtype, device: torch.device) -> Any:
    """``AutoModel.from_pretrained`` in eval mode on ``device``, shared while in use."""
    identity = directory_identity(Path(source.ref)) if source.is_dir else ""
    key = (source.ref, identity, str(dtype), str(device))
    model = _LOADED.get(key)
    if model is None:
        model = load_pretrained(source, "AutoModel", dtype=dtype).to(device).eval()
        _LOADED[key] = model
    return model


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


def parse_layer(value: str | int) -> LayerChoice:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in ("last", "mean"):
        return text
    try:
        return int(text)
    except ValueError:
        raise EncoderError(
            f"unknown layer {value!r}: use 'last', 'mean' or a layer number"
        ) from None


def check_layer(layer: LayerChoice, num_layers: int, model_name: str) -> None:
    if isinstance(layer, int) and not -(num_layers + 1) <= layer <= num_layers:
        raise EncoderError(
            f"layer {layer} out of range for {model_name}: it has {num_layers} layers "
            f"(0 = embeddings output, {num_layers} = last; negative counts from the end)"
        )


def select_layer(outputs: Any, layer: LayerChoice) -> torch.Tensor:
    """The hidden states asked for, shape (batch, time, dim)."""
    import torch

    if layer == "last":
        return outputs.last_hidden_state
    hidden = outputs.hidden_states
    if layer == "mean":
        return torch.stack(hidden[1:], dim=0).mean(dim=0)
    return hidden[layer]


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (batch, time, dim) over the valid steps of ``mask`` (batch, time) -> (batch, dim).
    Computed in float32 whatever the model's dtype."""
    import torch

    hidden = hidden.float()
    valid = mask.to(hidden.device, torch.bool)
    if pooling == "mean":
        weights = valid.unsqueeze(-1).float()
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(~valid.unsqueeze(-1), float("-inf")).max(dim=1).values
    raise EncoderError(f"unknown pooling {pooling!r}")


def load_pretrained(source: ModelSource, auto_class: str, **kwargs: Any) -> Any:
    """``transformers.<auto_class>.from_pretrained(source)`` (AutoConfig, AutoTokenizer,
    AutoFeatureExtractor, AutoModel), quietly and with a clear error when it fails."""
    import transformers

    with hub_errors(source), quiet_transformers():
        return getattr(transformers, auto_class).from_pretrained(source.ref, **kwargs)


HFEncoderT = TypeVar("HFEncoderT", bound="HFEncoder")

#: What every Hugging Face encoder's spec may set besides its own options.
COMMON_OPTIONS = ("model", "layer", "device", "dtype")


def build_from_options(
    encoder_class: type[HFEncoderT],
    options: Mapping[str, str],
    own_options: Iterable[str],
    kind: str,
) -> HFEncoderT:
    """The registry factory of a Hugging Face encoder: the options (strings) checked
    against :data:`COMMON_OPTIONS` and ``own_options``, then given to the constructor,
    which parses and validates each value."""
    check_options(options, {*COMMON_OPTIONS, *own_options}, kind)
    return encoder_class(**options)


def load_config(source: ModelSource) -> Any:
    """The checkpoint's ``AutoConfig``."""
    # config.json first: a hub name that cannot be fetched fails here, through
    # huggingface_hub's own errors, before any loader hides the cause.
    find_file(source, "config.json")
    return load_pretrained(source, "AutoConfig")


class HFEncoder(Encoder):
    """Base of the Hugging Face speech and text encoders: a checkpoint, a layer, a dtype and
    a device; the config, preprocessor and model load on first use, once.

    The settings every such encoder has (``model``, ``layer``, ``device``, ``dtype``) are
    this class's constructor arguments; subclasses take their own settings and pass these
    on (``**common``). Subclasses implement
    :meth:`_check_config` (is this the right kind of model?), :meth:`_load_preprocessor`
    (feature extractor or tokenizer), :meth:`_spec_options` and :meth:`_settings`.
    """

    #: Short names for checkpoints of this kind (an existing directory of the same name wins).
    aliases: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        model: str,
        *,
        layer: LayerChoice = "last",
        device: str | None = None,
        dtype: str = "float32",
    ):
        self.source = resolve_source(model, self.aliases)
        self.layer = parse_layer(layer)
        self.dtype = parse_dtype(dtype)
        self._device_request = device
        self._config: Any = None
        self._model: Any = None
        self._device: Any = None
        self._identity: str | None = None

    # ---- hooks --------------------------------------------------------------------------
    def _check_config(self, config: Any) -> None:
        """Raise an EncoderError when ``config`` is not a model this encoder can run."""

    def _load_preprocessor(self) -> Any:
        """Load (and cache) the feature extractor or tokenizer."""
        raise NotImplementedError

    def _spec_options(self) -> Sequence[tuple[str, Any, Any]]:
        """``(name, value, default)`` of the encoder's own options, in spec order."""
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        """The encoder's own settings that determine its vectors, for :meth:`config`:
        by default its spec options; override where a resolved value differs."""
        return {name: value for name, value, _default in self._spec_options()}

    # ---- light metadata (no model weights needed) -------------------------------------
    def _hf_config(self) -> Any:
        if self._config is None:
            config = load_config(self.source)
            self._check_config(config)
            check_layer(self.layer, config.num_hidden_layers, self.source.requested)
            self._config = config  # cached only once it passed the checks
        return self._config

    @property
    def dim(self) -> int:
        return int(self._hf_config().hidden_size)

    @property
    def spec(self) -> str:
        """The model (a directory as its absolute path) plus the options that differ from
        their defaults, e.g. ``wav2vec2-base?layer=6&dtype=bfloat16``."""
        options = [
            f"{key}={value}"
            for key, value, default in (*self._spec_options(), ("dtype", self.dtype, "float32"))
            if value != default
        ]
        base = self.source.ref if self.source.is_dir else self.source.requested
        return base + ("?" + "&".join(options) if options else "")

    def config(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = checkpoint_identity(self.source)
        return {
            "model": self.source.display_name,
            "checkpoint": self._identity,
            **self._settings(),
            "dtype": self.dtype,
            "library": library_version(),
        }

    # ---- the model ----------------------------------------------------------------------
    def _load(self) -> Any:
        if self._model is None:
            self._hf_config()
            self._load_preprocessor()
            self._device = pick_device(self._device_request)
            dtype = torch_dtype(self.dtype, self._device)
            self._model = load_model(self.source, dtype, self._device)
        return self._model

    def _pooled(
        self, inputs: Mapping[str, Any], pool: Callable[[torch.Tensor], torch.Tensor]
    ) -> np.ndarray:
        """Run the model on ``inputs`` (already on its device), take the chosen layer's
        (batch, time, dim) states and ``pool`` them: float32 (batch, dim)."""
        import torch

        model = self._load()
        with torch.inference_mode():
            outputs = model(**inputs, output_hidden_states=self.layer != "last")
            pooled = pool(select_layer(outputs, self.layer))
        return pooled.float().cpu().numpy().astype(np.float32)
