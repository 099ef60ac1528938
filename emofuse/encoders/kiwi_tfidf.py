"""Korean text features with no network: Kiwi morphemes + character n-grams, TF-IDF, SVD.

Two TF-IDF blocks (sublinear tf, smoothed idf, each row L2-normalised and weighted
1/sqrt(2)): Kiwi morpheme n-grams (``form/TAG``, default uni+bigrams) and character
n-grams inside words (default 1-3). Their concatenation is reduced by a truncated SVD
and L2-normalised. Everything is fitted on the *training* texts only (``fit``), on the
sorted set of distinct texts (in :func:`tokenizer_form`), so order and duplicates do
not matter.

``dim`` (default 256) is an upper bound: the SVD cannot have more components than there
are distinct training texts or vocabulary entries, so ``dim`` is known after ``fit`` and
then fixed by the fitted state. Asking for ``dim`` before fitting raises.

An empty (or all-white-space) text encodes to the zero vector; the feature store flags
empty text upstream, but encoding one never fails.

The fitted state is plain arrays and lists (safetensors + JSON, no pickle); its hash is
the state fingerprint. The TF-IDF blocks are :mod:`emofuse.encoders.kiwi_features`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from emofuse.encoders.base import EncoderError, text_item
from emofuse.encoders.fitted_state import FittedStateEncoder
from emofuse.encoders.kiwi_features import TfidfBlocks, tokenizer_form
from emofuse.encoders.options import check_options, parse_int, parse_int_range
from emofuse.modalities import TEXT


@dataclass(frozen=True)
class KiwiTfidfSettings:
    dim: int = 256
    morph_ngrams: tuple[int, int] = (1, 2)  # (0, 0) disables the block
    char_ngrams: tuple[int, int] = (1, 3)
    min_df: int = 1
    max_features: int = 10_000  # per block: bounds the state (dim x vocabulary floats)

    def to_options(self) -> dict[str, str]:
        """Options that differ from the defaults, as the registry spells them."""
        out = {}
        for key, value in asdict(self).items():
            if value != getattr(KiwiTfidfSettings, key):
                out[key] = f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)
        return out


class KiwiTfidfEncoder(FittedStateEncoder):
    """Morpheme + character n-gram TF-IDF reduced by SVD; must be fitted on training text."""

    modality = TEXT
    name = "kiwi-tfidf"

    def __init__(self, settings: KiwiTfidfSettings | None = None):
        self.settings = settings or KiwiTfidfSettings()
        s = self.settings
        if s.dim < 1:
            raise EncoderError(f"kiwi-tfidf: dim must be at least 1, not {s.dim}")
        if s.min_df < 1 or s.max_features < 1:
            raise EncoderError("kiwi-tfidf: min_df and max_features must be at least 1")
        if s.morph_ngrams == (0, 0) and s.char_ngrams == (0, 0):
            raise EncoderError("kiwi-tfidf: morph_ngrams and char_ngrams cannot both be 0")
        self._blocks = TfidfBlocks(
            self.name, s.morph_ngrams, s.char_ngrams, s.min_df, s.max_features
        )

    # -- interface ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._state is None:
            raise EncoderError(
                "kiwi-tfidf: dim is known only after fitting (at most "
                f"{self.settings.dim}); call fit(training_texts) or load_state(dir) first"
            )
        return int(self._state["components"].shape[0])

    def config(self) -> dict[str, Any]:
        return {
            **asdict(self.settings),
            "kiwipiepy": importlib.metadata.version("kiwipiepy"),
            "kiwipiepy_model": importlib.metadata.version("kiwipiepy_model"),
        }

    def fit(self, texts: Sequence[str]) -> None:
        from sklearn.decomposition import TruncatedSVD

        docs = sorted({tokenizer_form(text_item(t, self.name)) for t in texts} - {""})
        if len(docs) < 2:
            raise EncoderError(
                f"kiwi-tfidf: fit needs at least 2 distinct non-empty texts, got {len(docs)}"
            )
        s = self.settings
        state: dict[str, Any] = {"n_texts": len(docs)}
        x = self._blocks.fit(docs, state)
        n_components = min(s.dim, len(docs), x.shape[1] - 1)
        if n_components < 1:
            raise EncoderError("kiwi-tfidf: the fitted vocabulary is too small for any component")
        svd = TruncatedSVD(n_components=n_components, algorithm="randomized", random_state=0)
        svd.fit(x)
        state["components"] = svd.components_.astype(np.float32)
        self._set_state(state)

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        if self._state is None:
            raise EncoderError(
                "kiwi-tfidf is not fitted: call fit(training_texts) or load_state(dir) "
                "before encode (the feature store does this when given a fit table)"
            )
        docs = [tokenizer_form(text_item(t, self.name)) for t in batch]
        if not docs:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self._blocks.transform(docs, self._state)
        out = np.asarray(x @ self._state["components"].T, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    def __repr__(self) -> str:
        dim = self.dim if self.is_fitted else f"<={self.settings.dim} (unfitted)"
        return f"{type(self).__name__}({self.spec!r}, dim={dim}, fp={self.fingerprint()})"


def build(options: dict[str, str]) -> KiwiTfidfEncoder:
    """Registry factory: ``kiwi-tfidf?dim=128&char_ngrams=2-4``."""
    check_options(options, asdict(KiwiTfidfSettings()), "kiwi-tfidf")
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("morph_ngrams", "char_ngrams"):
            values[key] = parse_int_range(value, name=f"kiwi-tfidf: {key}")
        else:
            values[key] = parse_int(value, name=f"kiwi-tfidf {key}")
    return KiwiTfidfEncoder(KiwiTfidfSettings(**values))
