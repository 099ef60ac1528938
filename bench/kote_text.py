"""How fast and how useful is the offline Korean text encoder? KOTE comments, one process.

    python bench/kote_text.py [--kote DIR] [--dims 64,256,512] [--emotions 5] [--C 1.0]

Data: the two KOTE parts in --kote DIR (10,000 Korean online comments, each with
the *set* of emotions any of its 5 raters chose, out of 44 + 없음). val.tsv is used as the
training part and test.tsv as the evaluation part; the two share no text.

1. Throughput (single process, BLAS limited to --threads): the time to fit ``kiwi-tfidf``
   (default settings) on the 5,000 training comments, and sentences/s of ``encode`` over
   all 10,000 comments in batches of 64 (wall clock and per CPU-second; the machine may be
   shared), with the share of that time spent in Kiwi morpheme analysis alone.

2. Usefulness, an honest multi-label task: KOTE gives only label sets (no vote counts, and
   only 84 rows carry a single label), so there is no clean multi-class version and the
   emofuse softmax head is *not* used. Instead, for each of the --emotions most frequent
   emotions in the training part (없음 excluded), a one-vs-rest
   ``LogisticRegression(class_weight="balanced", C=--C)`` is fitted on the training vectors
   and scored on the evaluation part: ROC-AUC per emotion, their mean, and macro-F1 (the
   mean over those emotions of the positive-class F1 at the classifier's own threshold).
   Feature sets compared:
     - ``kiwi-tfidf?dim=D`` for each D in --dims (the real emofuse encoder, SVD-reduced);
     - the same two TF-IDF blocks *without* the SVD (Kiwi morpheme uni+bigrams and char_wb
       1-3 grams, sublinear tf, 10k terms each, rows L2-normalised and weighted 1/sqrt(2),
       rebuilt here with sklearn) -- the difference to the rows above is what SVD costs;
     - a plain ``TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3))`` baseline;
     - "always positive", the F1 floor (AUC 0.5): with emotions present in 30-45% of
       comments, F1 alone flatters weak models.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_data import KOTE_FILES, data_folder

BATCH = 64
NONE_LABEL = "없음"
DEFAULT_DIM = 256  # KiwiTfidfSettings().dim: the row whose encode time the Kiwi share uses


def read_labels(path: Path) -> list[str]:
    """labels.txt: ``index<TAB>name`` per line -> names by index."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        index, sep, name = line.partition("\t")
        if not sep or not index.strip().isdigit():
            raise SystemExit(f"{path}:{number}: expected 'index<TAB>name', got {line!r:.60}")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise SystemExit(f"{path}: label indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def read_split(path: Path, n_labels: int) -> tuple[list[str], list[set[int]]]:
    """A KOTE tsv (id, text, comma-separated label indices; no header)."""
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for number, row in enumerate(reader, 1):
            if len(row) != 3:
                raise SystemExit(
                    f"{path}:{number}: expected 3 tab-separated fields, got {len(row)}"
                )
            try:
                row_labels = {int(v) for v in row[2].split(",")}
            except ValueError:
                raise SystemExit(f"{path}:{number}: bad label list {row[2]!r}") from None
            if not all(0 <= v < n_labels for v in row_labels):
                raise SystemExit(f"{path}:{number}: label index outside 0..{n_labels - 1}")
            texts.append(row[1])
            labels.append(row_labels)
    return texts, labels


def load_kote(root: Path) -> dict[str, Any]:
    data_folder(root, "--kote", "KOTE", KOTE_FILES)
    names = read_labels(root / "labels.txt")
    train_texts, train_labels = read_split(root / "val.tsv", len(names))
    test_texts, test_labels = read_split(root / "test.tsv", len(names))
    return {
        "names": names,
        "train": (train_texts, train_labels),
        "test": (test_texts, test_labels),
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def encode_batched(encoder: Any, texts: list[str], desc: str) -> np.ndarray:
    from tqdm.auto import tqdm

    starts = range(0, len(texts), BATCH)
    return np.concatenate(
        [encoder.encode(texts[s : s + BATCH]) for s in tqdm(starts, desc=desc, leave=False)]
    )


def kiwi_tfidf_features(
    dim: int, train: list[str], test: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Fit kiwi-tfidf?dim=D on train, encode train + test in batches of 64, with timings."""
    from emofuse.encoders import build_encoder

    encoder = build_encoder(f"kiwi-tfidf?dim={dim}", "text")
    _, fit_s, _ = timed(lambda: encoder.fit(train))
    vectors, wall, cpu = timed(
        lambda: encode_batched(encoder, train + test, f"encoding {encoder.spec}")
    )
    n = len(train) + len(test)
    speed = {"fit s": fit_s, "encode s": wall, "sent/s": n / wall, "sent/cpu-s": n / cpu}
    return vectors[: len(train)], vectors[len(train) :], speed


def kiwi_share(texts: list[str]) -> tuple[float, float, int]:
    """Seconds to load Kiwi, and seconds of Kiwi analysis alone over texts in batches of 64."""
    from emofuse.encoders.kiwi_features import shared_kiwi, tokenizer_form

    _, load_s, _ = timed(lambda: shared_kiwi().tokenize(["준비"]))
    docs = [tokenizer_form(t) for t in texts]
    kiwi = shared_kiwi()
    _, tokenize_s, _ = timed(
        # With num_workers > 0, tokenize(list) is lazy: consume it.
        lambda: [list(kiwi.tokenize(docs[s : s + BATCH])) for s in range(0, len(docs), BATCH)]
    )
    return load_s, tokenize_s, kiwi.num_workers


def sparse_unreduced(train: list[str], test: list[str]) -> tuple[Any, Any]:
    """The encoder's two TF-IDF blocks before the SVD, rebuilt with sklearn."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    from emofuse.encoders.kiwi_features import morpheme_ngrams, shared_kiwi, tokenizer_form
    from emofuse.encoders.kiwi_tfidf import KiwiTfidfSettings

    s = KiwiTfidfSettings()
    kiwi = shared_kiwi()

    def morphs(texts: list[str]) -> list[list[str]]:
        analysed = kiwi.tokenize([tokenizer_form(t) for t in texts])
        return [morpheme_ngrams([f"{t.form}/{t.tag}" for t in a], s.morph_ngrams) for a in analysed]

    common = {"sublinear_tf": True, "max_features": s.max_features, "lowercase": False}
    morph = TfidfVectorizer(analyzer=lambda tokens: tokens, **common)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, **common)
    weight = 1 / np.sqrt(2)
    train_x = sp.hstack(
        [
            morph.fit_transform(morphs(train)),
            char.fit_transform([tokenizer_form(t) for t in train]),
        ],
        format="csr",
    )
    test_x = sp.hstack(
        [morph.transform(morphs(test)), char.transform([tokenizer_form(t) for t in test])],
        format="csr",
    )
    return train_x * weight, test_x * weight


def char_baseline(train: list[str], test: list[str]) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3))
    return vectorizer.fit_transform(train), vectorizer.transform(test)


def one_vs_rest(
    train_x: Any, train_y: np.ndarray, test_x: Any, test_y: np.ndarray, c: float
) -> tuple[list[float], list[float]]:
    """Per emotion (column): ROC-AUC and positive-class F1 on the evaluation part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score

    aucs, f1s = [], []
    for k in range(train_y.shape[1]):
        model = LogisticRegression(class_weight="balanced", C=c, max_iter=5000)
        model.fit(train_x, train_y[:, k])
        aucs.append(roc_auc_score(test_y[:, k], model.decision_function(test_x)))
        f1s.append(f1_score(test_y[:, k], model.predict(test_x)))
    return aucs, f1s


def main() -> None:
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kote", type=Path, help="KOTE folder (labels.txt, val.tsv, test.tsv)")
    parser.add_argument("--dims", default="64,256,512", help="kiwi-tfidf SVD dims to compare")
    parser.add_argument("--emotions", type=int, default=5, help="most frequent emotions scored")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",") if d.strip()]

    kote = load_kote(args.kote)
    names = kote["names"]
    (train, train_sets), (test, test_sets) = kote["train"], kote["test"]
    counts = Counter(label for labels in train_sets for label in labels)
    top = [k for k, _ in counts.most_common() if names[k] != NONE_LABEL][: args.emotions]
    train_y = np.array([[k in labels for k in top] for labels in train_sets], dtype=int)
    test_y = np.array([[k in labels for k in top] for labels in test_sets], dtype=int)
    print(
        f"KOTE: train = val.tsv {len(train)} comments, evaluation = test.tsv {len(test)}; "
        f"{len(set(train) & set(test))} texts in both; "
        f"{np.mean([len(s) for s in train_sets]):.1f} labels per comment on average"
    )
    print("Emotions scored (share of comments with the label, train / evaluation):")
    for j, k in enumerate(top):
        print(f"  {k:2d} {names[k]:<12} {train_y[:, j].mean():.2f} / {test_y[:, j].mean():.2f}")

    with threadpool_limits(limits=args.threads):
        load_s, tokenize_s, kiwi_threads = kiwi_share(train + test)
        features: dict[str, tuple[Any, Any, int, dict[str, float]]] = {}
        for dim in dims:
            train_x, test_x, speed = kiwi_tfidf_features(dim, train, test)
            features[f"kiwi-tfidf?dim={dim}"] = (train_x, test_x, train_x.shape[1], speed)
        (train_x, test_x), wall, _ = timed(lambda: sparse_unreduced(train, test))
        features["kiwi+char tf-idf, no SVD"] = (train_x, test_x, train_x.shape[1], {"fit s": wall})
        (train_x, test_x), wall, _ = timed(lambda: char_baseline(train, test))
        features["char_wb 1-3 tf-idf"] = (train_x, test_x, train_x.shape[1], {"fit s": wall})

        rows = []
        for name, (train_x, test_x, dim, speed) in features.items():
            aucs, f1s = one_vs_rest(train_x, train_y, test_x, test_y, args.C)
            row: dict[str, Any] = {"features": name, "dim": dim}
            row.update({f"AUC {names[k]}": a for k, a in zip(top, aucs, strict=True)})
            row.update({"mean AUC": np.mean(aucs), "macro-F1": np.mean(f1s)})
            rows.append(row | speed)
    floor = [2 * p / (1 + p) for p in test_y.mean(axis=0)]
    rows.append({"features": "always positive", "mean AUC": 0.5, "macro-F1": np.mean(floor)})

    table = pd.DataFrame(rows).set_index("features")
    fmt = {"dim": "{:.0f}", "fit s": "{:.1f}", "encode s": "{:.1f}"}
    fmt |= {"sent/s": "{:.0f}", "sent/cpu-s": "{:.0f}"}
    shown = table.apply(
        lambda col: col.map(lambda v: "-" if pd.isna(v) else fmt.get(col.name, "{:.3f}").format(v))
    )
    timed_dim = DEFAULT_DIM if DEFAULT_DIM in dims else (dims[-1] if dims else 0)
    throughput = features[f"kiwi-tfidf?dim={timed_dim}"][3] if dims else {}
    print(
        f"\nOne-vs-rest LogisticRegression(class_weight='balanced', C={args.C}), fitted on "
        f"val.tsv, scored on test.tsv; {args.threads} BLAS thread(s). 'fit s' is the "
        "encoder's fit on the 5,000 training comments (for the sparse rows: vectorising both "
        "parts); 'encode s' / 'sent/s' cover encode() over all 10,000 comments in batches "
        f"of {BATCH}."
    )
    print(shown.to_string())
    if throughput:
        share = tokenize_s / throughput["encode s"]
        print(
            f"\nKiwi: {load_s:.1f} s to load; morpheme analysis alone {tokenize_s:.1f} s over the "
            f"10,000 comments ({len(train + test) / tokenize_s:.0f} sent/s) = {share:.0%} of "
            f"kiwi-tfidf?dim={timed_dim} encode time ({kiwi_threads} Kiwi thread(s))."
        )


if __name__ == "__main__":
    main()
