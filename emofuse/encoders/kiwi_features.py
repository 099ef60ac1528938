"""Korean text as sparse TF-IDF blocks: the features of ``kiwi-tfidf`` (which reduces them
by SVD) and ``kiwi-sparse`` (which learns a logistic regression on them).

Two blocks, either one optional: Kiwi morpheme n-grams (``form/TAG``, e.g. uni+bigrams)
and character n-grams inside words. Each block: sublinear tf, smoothed idf, every row
L2-normalised and weighted 1/sqrt(number of blocks). The vocabularies and idf are fitted
on the distinct training texts (in :func:`tokenizer_form`) and kept in the encoder's
fitted state as ``<block>_vocab`` and ``<block>_idf`` (``morph``, ``char``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from emofuse.encoders.base import EncoderError

#: Above this many texts, morpheme analysis shows a progress bar.
PROGRESS_MIN_TEXTS = 5000
_SPACES = re.compile(r"\s+")


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


@dataclass(frozen=True)
class TfidfBlocks:
    """The TF-IDF blocks of one encoder's settings; ``(0, 0)`` n-grams turn a block off.
    ``encoder`` names the encoder in error messages."""

    encoder: str
    morph_ngrams: tuple[int, int]
    char_ngrams: tuple[int, int]
    min_df: int
    max_features: int  # per block

    @property
    def names(self) -> list[str]:
        """The blocks in use, in column order."""
        pairs = (("morph", self.morph_ngrams), ("char", self.char_ngrams))
        return [block for block, ngrams in pairs if ngrams != (0, 0)]

    @property
    def weight(self) -> float:
        return 1.0 / np.sqrt(len(self.names))

    def fit(self, docs: list[str], state: dict[str, Any]) -> sp.csr_matrix:
        """Learn each block's vocabulary and idf from ``docs`` (distinct, in
        :func:`tokenizer_form`) into ``state``; returns the docs' TF-IDF rows."""
        from sklearn.feature_extraction.text import CountVectorizer

        blocks = []
        for block in self.names:
            vectorizer = CountVectorizer(
                **self._vectorizer_args(block),
                min_df=min(self.min_df, len(docs)),
                max_features=self.max_features,
                dtype=np.int64,
            )
            try:
                counts = vectorizer.fit_transform(self._analysed(block, docs)).tocsr()
            except ValueError as error:  # "empty vocabulary"
                raise EncoderError(f"{self.encoder}: {block} block: {error}") from error
            vocab = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            df = np.bincount(counts.indices, minlength=len(vocab))
            state[f"{block}_vocab"] = vocab
            state[f"{block}_idf"] = (np.log((1 + len(docs)) / (1 + df)) + 1.0).astype(np.float32)
            blocks.append(_tfidf(counts, state[f"{block}_idf"], self.weight))
        return sp.hstack(blocks, format="csr")

    def transform(self, docs: list[str], state: dict[str, Any]) -> sp.csr_matrix:
        """The TF-IDF rows (float32) of ``docs`` with the vocabularies and idf of ``state``."""
        from sklearn.feature_extraction.text import CountVectorizer

        blocks = []
        for block in self.names:
            vocab = state[f"{block}_vocab"]
            vectorizer = CountVectorizer(
                **self._vectorizer_args(block),
                vocabulary={term: i for i, term in enumerate(vocab)},
                dtype=np.int64,
            )
            counts = vectorizer.transform(self._analysed(block, docs)).tocsr()
            blocks.append(_tfidf(counts, state[f"{block}_idf"], self.weight))
        return sp.hstack(blocks, format="csr").astype(np.float32)

    def _analysed(self, block: str, docs: list[str]) -> list[Any]:
        """What the block's counter reads: the docs themselves for characters, the lists
        of morpheme n-grams for morphemes."""
        if block == "char":
            return docs
        from tqdm.auto import tqdm

        analysed = shared_kiwi().tokenize(docs)
        bar = tqdm(
            analysed, total=len(docs), desc="kiwi morphemes",
            disable=len(docs) < PROGRESS_MIN_TEXTS, leave=False,
        )  # fmt: skip
        return [
            morpheme_ngrams([f"{t.form}/{t.tag}" for t in tokens], self.morph_ngrams)
            for tokens in bar
        ]

    def _vectorizer_args(self, block: str) -> dict[str, Any]:
        if block == "morph":
            return {"analyzer": _identity, "lowercase": False}
        return {"analyzer": "char_wb", "ngram_range": self.char_ngrams, "lowercase": False}


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, weight: float) -> sp.csr_matrix:
    """Sublinear tf x idf, each row L2-normalised then scaled by ``weight``."""
    counts = counts.astype(np.float64)
    counts.data = 1.0 + np.log(counts.data)
    x = counts @ sp.diags(idf.astype(np.float64))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    scale = np.divide(weight, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)
