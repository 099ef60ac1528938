"""What the Hugging Face speech and text encoders share: :class:`HFEncoder`, the base
class that holds the checkpoint (:mod:`emofuse.encoders.hf_checkpoint`), its lazily loaded
config and model, the layer (:mod:`emofuse.encoders.hf_layers`), device, dtype and
autocast (:mod:`emofuse.encoders.hf_device`), and builds the spec and config from each
encoder's own settings; and :func:`build_from_options`, their registry factory.

Precision and the vectors' identity: ``dtype`` is the weights' dtype, ``autocast`` runs
a float32 model's matrix products in bfloat16/float16 (pooling stays float32). The
config (so the fingerprint, so the feature store's directory) names the autocast only
when it is on: float32 vectors keep the key they always had, on any device, and
autocast vectors get another one, so the two never mix in a store.

Heavy libraries (torch, transformers) are imported inside functions so that importing
this module stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from emofuse.encoders.base import Encoder
from emofuse.encoders.hf_checkpoint import (
    checkpoint_identity,
    library_version,
    load_config,
    load_model,
    resolve_source,
)
from emofuse.encoders.hf_device import (
    compute_dtype,
    parse_autocast,
    parse_dtype,
    pick_device,
    precision,
    torch_dtype,
)
from emofuse.encoders.hf_layers import LayerChoice, check_layer, parse_layer, select_layer
from emofuse.encoders.options import check_options

if TYPE_CHECKING:
    import torch

HFEncoderT = TypeVar("HFEncoderT", bound="HFEncoder")

#: What every Hugging Face encoder's spec may set besides its own options.
COMMON_OPTIONS = ("model", "layer", "device", "dtype", "autocast")


def build_from_options(
    encoder_class: type[HFEncoderT], options: Mapping[str, str], kind: str
) -> HFEncoderT:
    """The registry factory of a Hugging Face encoder: the options (strings) checked
    against :data:`COMMON_OPTIONS` and the encoder's own (its ``spec_defaults``), then
    given to the constructor, which parses and validates each value."""
    check_options(options, {*COMMON_OPTIONS, *encoder_class.spec_defaults}, kind)
    return encoder_class(**options)


class HFEncoder(Encoder):
    """Base of the Hugging Face speech and text encoders: a checkpoint, a layer, a dtype,
    an autocast and a device; the config, preprocessor and model load on first use, once.

    The settings every such encoder has (``model``, ``layer``, ``device``, ``dtype``,
    ``autocast``) are
    this class's constructor arguments; subclasses take their own settings and pass these
    on (``**common``). Subclasses list their own options in :attr:`spec_defaults` and
    implement :meth:`_check_config` (is this the right kind of model?),
    :meth:`_load_preprocessor` (feature extractor or tokenizer) and, where a resolved value
    differs from the option, :meth:`_settings`.
    """

    #: Short names for checkpoints of this kind (an existing directory of the same name wins).
    aliases: ClassVar[Mapping[str, str]] = {}
    #: The encoder's own options in spec order (``layer`` among them, where the encoder
    #: wants it there), each with its constructor default: a spec names only those that
    #: differ from it.
    spec_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        model: str,
        *,
        layer: LayerChoice = "last",
        device: str | None = None,
        dtype: str = "float32",
        autocast: str | None = None,
    ):
        self.source = resolve_source(model, self.aliases)
        self.layer = parse_layer(layer)
        self.dtype = parse_dtype(dtype)
        #: None: not said (feature extraction may choose, see use_default_autocast).
        self.autocast = parse_autocast(autocast)
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

    def _option_value(self, name: str) -> Any:
        """The value of the spec option ``name``: by default the attribute of that name."""
        return getattr(self, name)

    def _spec_options(self) -> Sequence[tuple[str, Any, Any]]:
        """``(name, value, default)`` of the encoder's own options, in spec order."""
        return [
            (name, self._option_value(name), default)
            for name, default in self.spec_defaults.items()
        ]

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
        common = (("dtype", self.dtype, "float32"), ("autocast", self.autocast_on, None))
        options = [
            f"{key}={value}"
            for key, value, default in (*self._spec_options(), *common)
            if value != default
        ]
        base = self.source.ref if self.source.is_dir else self.source.requested
        return base + ("?" + "&".join(options) if options else "")

    def config(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = checkpoint_identity(self.source)
        autocast = {"autocast": self.autocast_on} if self.autocast_on else {}
        return {
            "model": self.source.display_name,
            "checkpoint": self._identity,
            **self._settings(),
            "dtype": self.dtype,
            **autocast,  # only when on: float32 vectors keep their key
            "library": library_version(),
        }

    # ---- device and precision -----------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model runs (``device`` option; by default CUDA, then MPS, then CPU)."""
        if self._device is None:
            self._device = pick_device(self._device_request)
        return self._device

    @property
    def autocast_on(self) -> str | None:
        """The autocast dtype when autocast changes anything (float32 weights), else None."""
        effective = compute_dtype(self.dtype, self.autocast)
        return effective if effective != self.dtype else None

    def use_default_autocast(self) -> bool:
        """Feature extraction's default: bfloat16 autocast for a float32 model on CUDA
        whose spec did not say (``autocast=off`` keeps float32). True when it turned it on;
        the spec and the fingerprint then say so."""
        if self.autocast is None and self.dtype == "float32" and self.device.type == "cuda":
            self.autocast = "bfloat16"
            return True
        return False

    # ---- the model ----------------------------------------------------------------------
    def _load(self) -> Any:
        if self._model is None:
            if self.autocast_on == "bfloat16" and self.device.type == "cpu":
                # Kept, not dropped: float32 here would give other vectors than the ones
                # a bundle was trained on (made on a GPU under bfloat16 autocast).
                print(
                    f"warning: {self.spec}: bfloat16 autocast on a CPU, as the spec says "
                    "(as the vectors were made): slow on CPUs without bfloat16 units, and "
                    "within about 10 % of float32, not equal",
                    file=sys.stderr,
                )
            self._hf_config()
            self._load_preprocessor()
            dtype = torch_dtype(self.dtype, self.device)
            self._model = load_model(self.source, dtype, self.device)
        return self._model

    def load(self) -> None:
        """Load the model now (feature extraction does, while the first batch is read)."""
        self._load()

    def _pooled(
        self, inputs: Mapping[str, Any], pool: Callable[[torch.Tensor], torch.Tensor]
    ) -> np.ndarray:
        """Run the model on ``inputs`` (already on its device), take the chosen layer's
        (batch, time, dim) states and ``pool`` them: float32 (batch, dim)."""
        import torch

        model = self._load()
        with torch.inference_mode():
            with precision(self.device, self.dtype, self.autocast):
                outputs = model(**inputs, output_hidden_states=self.layer != "last")
            hidden = select_layer(outputs, self.layer, mean_in_float32=self.dtype == "float32")
            pooled = pool(hidden)  # in float32 (masked_pool), outside autocast
            return pooled.float().cpu().numpy().astype(np.float32)
