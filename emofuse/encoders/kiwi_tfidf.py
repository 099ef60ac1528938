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
the state fingerprint.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from emofuse.encoders.base import Encoder, EncoderError, text_item
from emofuse.encoders.fitted_state import load_fitted_state, save_fitted_state, state_hash
from emofuse.encoders.options import check_options, parse_int, parse_int_range
from emofuse.modalities import TEXT

STATE_FORMAT = 1
#: Above this many texts, morpheme analysis shows a progress bar.
PROGRESS_MIN_TEXTS = 5000
_SPACES = re.compile(r"\s+")


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


def tokenizer_form(text: str) -> str:
    """The form Kiwi and the n-gram counters read: NFKC, lower case, one space between
    words. Internal to the tokenisation (the text given to ``encode`` is already
    :func:`emofuse.text.clean_text`); not the store key nor the de-duplication form."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


@lru_cache(maxsize=1)
def shared_kiwi() -> Any:
    """The one Kiwi analyser of this process (loading takes about a second)."""
    from kiwipiepy import Kiwi

    return Kiwi()


def morpheme_ngrams(tokens: Sequence[str], ngrams: tuple[int, int]) -> list[str]:
    low, high = ngrams
    return [
        " ".join(tokens[i : i + n])
        for n in range(low, high + 1)
        for i in range(len(tokens) - n + 1)
    ]


def _morphemes(texts: Sequence[str]) -> list[list[str]]:
    from tqdm.auto import tqdm

    analysed = shared_kiwi().tokenize(texts)
    bar = tqdm(
        analysed, total=len(texts), desc="kiwi morphemes", disable=len(texts) < PROGRESS_MIN_TEXTS
    )
    return [[f"{t.form}/{t.tag}" for t in tokens] for tokens in bar]


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, weight: float) -> sp.csr_matrix:
    counts = counts.astype(np.float64)
    counts.data = 1.0 + np.log(counts.data)
    x = counts @ sp.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    scale = np.divide(weight, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)


class KiwiTfidfEncoder(Encoder):
    """Morpheme + character n-gram TF-IDF reduced by SVD; must be fitted on training text."""

    modality = TEXT
    name = "kiwi-tfidf"
    needs_fit = True

    def __init__(self, settings: KiwiTfidfSettings | None = None):
        self.settings = settings or KiwiTfidfSettings()
        s = self.settings
        if s.dim < 1:
            raise EncoderError(f"kiwi-tfidf: dim must be at least 1, not {s.dim}")
        if s.min_df < 1 or s.max_features < 1:
            raise EncoderError("kiwi-tfidf: min_df and max_features must be at least 1")
        if s.morph_ngrams == (0, 0) and s.char_ngrams == (0, 0):
            raise EncoderError("kiwi-tfidf: morph_ngrams and char_ngrams cannot both be 0")
        self._state: dict[str, Any] | None = None
        self._state_hash = ""

    # -- interface ---------------------------------------------------------------------
    @property
    def spec(self) -> str:
        options = self.settings.to_options()
        return self.name + (
            "?" + "&".join(f"{k}={v}" for k, v in sorted(options.items())) if options else ""
        )

    @property
    def dim(self) -> int:
        if self._state is None:
            raise EncoderError(
                "kiwi-tfidf: dim is known only after fitting (at most "
                f"{self.settings.dim}); call fit(training_texts) or load_state(dir) first"
            )
        return int(self._state["components"].shape[0])

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    def config(self) -> dict[str, Any]:
        return {
            **asdict(self.settings),
            "kiwipiepy": importlib.metadata.version("kiwipiepy"),
            "kiwipiepy_model": importlib.metadata.version("kiwipiepy_model"),
        }

    def state_fingerprint(self) -> str:
        return self._state_hash

    def fit(self, texts: Sequence[str]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import CountVectorizer

        docs = sorted({tokenizer_form(text_item(t, self.name)) for t in texts} - {""})
        if len(docs) < 2:
            raise EncoderError(
                f"kiwi-tfidf: fit needs at least 2 distinct non-empty texts, got {len(docs)}"
            )
        s = self.settings
        state: dict[str, Any] = {"n_texts": len(docs)}
        blocks = []
        for block, analysed in self._analysed_blocks(docs):
            vectorizer = CountVectorizer(
                **self._vectorizer_args(block),
                min_df=min(s.min_df, len(docs)),
                max_features=s.max_features,
                dtype=np.int64,
            )
            try:
                counts = vectorizer.fit_transform(analysed).tocsr()
            except ValueError as error:  # "empty vocabulary"
                raise EncoderError(f"kiwi-tfidf: {block} block: {error}") from error
            vocab = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            df = np.bincount(counts.indices, minlength=len(vocab))
            idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
            state[f"{block}_vocab"] = vocab
            state[f"{block}_idf"] = idf.astype(np.float32)
            blocks.append(_tfidf(counts, state[f"{block}_idf"], self._block_weight()))
        x = sp.hstack(blocks, format="csr")
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
        blocks = []
        for block, analysed in self._analysed_blocks(docs):
            vocab = self._state[f"{block}_vocab"]
            vectorizer = _fixed_vocabulary_counter(self._vectorizer_args(block), vocab)
            counts = vectorizer.transform(analysed).tocsr()
            blocks.append(_tfidf(counts, self._state[f"{block}_idf"], self._block_weight()))
        x = sp.hstack(blocks, format="csr").astype(np.float32)
        out = np.asarray(x @ self._state["components"].T, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    def save_state(self, directory: str | Path) -> None:
        if self._state is None:
            raise EncoderError("kiwi-tfidf: nothing to save, the encoder is not fitted")
        save_fitted_state(
            directory,
            self._state,
            name=self.name,
            settings=self._settings_json(),
            fingerprint=self._state_hash,
            format_version=STATE_FORMAT,
        )

    def load_state(self, directory: str | Path) -> None:
        state, recorded = load_fitted_state(
            directory, name=self.name, settings=self._settings_json(), format_version=STATE_FORMAT
        )
        self._set_state(state)
        if self._state_hash != recorded:
            self._state, self._state_hash = None, ""
            raise EncoderError(
                f"{directory}: kiwi-tfidf state does not match its fingerprint (corrupt?)"
            )

    def __repr__(self) -> str:
        dim = self.dim if self.is_fitted else f"<={self.settings.dim} (unfitted)"
        return f"{type(self).__name__}({self.spec!r}, dim={dim}, fp={self.fingerprint()})"

    # -- helpers -----------------------------------------------------------------------
    def _blocks(self) -> list[str]:
        s = self.settings
        return [b for b, r in (("morph", s.morph_ngrams), ("char", s.char_ngrams)) if r != (0, 0)]

    def _block_weight(self) -> float:
        return 1.0 / np.sqrt(len(self._blocks()))

    def _analysed_blocks(self, docs: list[str]) -> Iterable[tuple[str, list[Any]]]:
        for block in self._blocks():
            if block == "morph":
                morphs = _morphemes(docs)
                yield block, [morpheme_ngrams(m, self.settings.morph_ngrams) for m in morphs]
            else:
                yield block, docs

    def _vectorizer_args(self, block: str) -> dict[str, Any]:
        if block == "morph":
            return {"analyzer": _identity, "lowercase": False}
        return {"analyzer": "char_wb", "ngram_range": self.settings.char_ngrams, "lowercase": False}

    def _settings_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self.settings)))

    def _set_state(self, state: dict[str, Any]) -> None:
        self._state = state
        self._state_hash = state_hash(self._settings_json(), state)


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _fixed_vocabulary_counter(args: dict[str, Any], vocab: list[str]) -> Any:
    """A CountVectorizer over a fixed vocabulary (needs no fitting)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        **args, vocabulary={term: i for i, term in enumerate(vocab)}, dtype=np.int64
    )


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
