"""Korean text features with no network: Kiwi morphemes + character n-grams, TF-IDF, SVD.

Two TF-IDF blocks (sublinear tf, smoothed idf, each row L2-normalised and weighted
1/sqrt(2)): Kiwi morpheme n-grams (``form/TAG``, default uni+bigrams) and character
n-grams inside words (default 1-3). Their concatenation is reduced by a truncated SVD
and L2-normalised. Everything is fitted on the *training* texts only (``fit``), on the
sorted set of distinct normalised texts, so order and duplicates do not matter.

``dim`` (default 256) is an upper bound: the SVD cannot have more components than there
are distinct training texts or vocabulary entries, so ``dim`` is known after ``fit`` and
then fixed by the fitted state. Asking for ``dim`` before fitting raises.

An empty (or all-white-space) text encodes to the zero vector; the feature store flags
empty text upstream, but encoding one never fails.

The fitted state is plain arrays and lists (safetensors + JSON, no pickle); its hash is
the state fingerprint.
"""

from __future__ import annotations

import hashlib
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

from emofuse.encoders.base import Encoder, EncoderError

STATE_JSON = "kiwi_tfidf.json"
STATE_ARRAYS = "kiwi_tfidf.safetensors"
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


def normalize_text(text: str) -> str:
    """NFKC, lower case, one space between words."""
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

    modality = "text"
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

        docs = sorted({normalize_text(_check_text(t)) for t in texts} - {""})
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
        docs = [normalize_text(_check_text(t)) for t in batch]
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
        from safetensors.numpy import save_file

        if self._state is None:
            raise EncoderError("kiwi-tfidf: nothing to save, the encoder is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            k: np.ascontiguousarray(v) for k, v in self._state.items() if isinstance(v, np.ndarray)
        }
        meta = {k: v for k, v in self._state.items() if not isinstance(v, np.ndarray)}
        save_file(arrays, str(directory / STATE_ARRAYS))
        manifest = {
            "format": STATE_FORMAT,
            "encoder": self.name,
            "settings": self._settings_json(),
            "state_fingerprint": self._state_hash,
            **meta,
        }
        (directory / STATE_JSON).write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")

    def load_state(self, directory: str | Path) -> None:
        from safetensors.numpy import load_file

        directory = Path(directory)
        json_path, arrays_path = directory / STATE_JSON, directory / STATE_ARRAYS
        for path in (json_path, arrays_path):
            if not path.is_file():
                raise EncoderError(
                    f"{path}: missing (is {directory} a kiwi-tfidf state directory?)"
                )
        try:
            manifest = json.loads(json_path.read_text("utf-8"))
            arrays = load_file(str(arrays_path))
        except (ValueError, OSError) as error:
            raise EncoderError(f"{directory}: unreadable kiwi-tfidf state ({error})") from error
        if manifest.get("format") != STATE_FORMAT or manifest.get("encoder") != self.name:
            raise EncoderError(f"{json_path}: not a kiwi-tfidf state of format {STATE_FORMAT}")
        if manifest["settings"] != self._settings_json():
            raise EncoderError(
                f"{json_path}: state was fitted with settings {manifest['settings']}, "
                f"but this encoder has {self._settings_json()}"
            )
        state = {
            k: v
            for k, v in manifest.items()
            if k not in ("format", "encoder", "settings", "state_fingerprint")
        }
        state.update(arrays)
        self._set_state(state)
        if self._state_hash != manifest.get("state_fingerprint"):
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
        digest = hashlib.sha256()
        digest.update(json.dumps(self._settings_json(), sort_keys=True).encode())
        for key in sorted(state):
            value = state[key]
            digest.update(key.encode())
            if isinstance(value, np.ndarray):
                digest.update(str((value.dtype.str, value.shape)).encode())
                digest.update(np.ascontiguousarray(value).tobytes())
            else:
                digest.update(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        self._state = state
        self._state_hash = digest.hexdigest()[:16]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _fixed_vocabulary_counter(args: dict[str, Any], vocab: list[str]) -> Any:
    """A CountVectorizer over a fixed vocabulary (needs no fitting)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        **args, vocabulary={term: i for i, term in enumerate(vocab)}, dtype=np.int64
    )


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise EncoderError(
            f"kiwi-tfidf: expected text (str), got {type(text).__name__}: {text!r:.60}"
        )
    return text


def _parse_range(key: str, value: str) -> tuple[int, int]:
    value = value.strip()
    if value == "0":
        return (0, 0)
    low, sep, high = value.partition("-")
    try:
        result = (int(low), int(high) if sep else int(low))
    except ValueError:
        result = (0, -1)
    if not 1 <= result[0] <= result[1]:
        raise EncoderError(
            f"kiwi-tfidf: {key} must look like '1-3', '2' or '0' (off), not {value!r}"
        )
    return result


def build(options: dict[str, str]) -> KiwiTfidfEncoder:
    defaults = KiwiTfidfSettings()
    known = set(asdict(defaults))
    unknown = set(options) - known
    if unknown:
        raise EncoderError(
            f"kiwi-tfidf: unknown option(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("morph_ngrams", "char_ngrams"):
            values[key] = _parse_range(key, value)
        else:
            try:
                values[key] = int(value)
            except ValueError as error:
                raise EncoderError(
                    f"kiwi-tfidf: {key} must be an integer, not {value!r}"
                ) from error
    return KiwiTfidfEncoder(KiwiTfidfSettings(**values))
