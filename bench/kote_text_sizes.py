"""Is the default offline text branch at least as good as a sparse linear model, at every
training size? And what does a large text corpus cost? KOTE comments, one run.

    python bench/kote_text_sizes.py --kote DIR [--sizes 1000,5000,all] [--emotions 3]
        [--seeds 0] [--scale 10000,100000] [--skip-accuracy] [--skip-cost]

Data: KOTE (--kote DIR: labels.txt, val.tsv, test.tsv; 10,000 Korean online comments,
each with the set of emotions its raters chose). Two tasks, both with a stratified split
of the pooled 10,000 comments (test 20 %, validation 10 %, training the rest), training
sets of --sizes drawn (stratified, seeded) from the training part, the same validation
and test rows for every size:

- ``seven``: the comments carrying exactly one of the Korean seven emotions (기쁨, 슬픔,
  화남/분노, 공포/무서움, 놀람, 역겨움/징그러움, 없음 as neutral): 5,217 comments, 7 classes,
  single-label. Its training part has about 3,650 comments, so sizes above that are "all".
- ``ovr:<emotion>``: one emotion against the rest over all 10,000 comments (2 classes),
  for the --emotions most frequent emotions.

Scored by UAR (unweighted average recall = balanced accuracy) on the test rows:

- ``kiwi-sparse + head``: the new default text branch, exactly as emofuse trains it
  (encoder fitted on the training rows with their labels, then the emofuse head with its
  default TrainConfig, best epoch on the validation rows);
- ``kiwi-tfidf + head``: the old default (256-d SVD), same head;
- ``sparse LR ...``: scikit-learn ``LogisticRegression`` on sparse TF-IDF (Kiwi morpheme
  uni+bigrams and char_wb 1-3 grams, sublinear tf, 50k terms per block, rows L2-normalised),
  built here with ``TfidfVectorizer`` independently of emofuse: ``C=1`` as a new user
  would run it, the same with ``class_weight="balanced"``, and balanced with C picked on
  the validation rows from (0.1, 0.3, 1, 3, 10, 30) -- the strongest of the three is the
  bar.

Cost (--scale): fitting and encoding ``kiwi-sparse`` and ``kiwi-tfidf`` on N comments
(KOTE repeated with a copy number appended, so every text is distinct and Kiwi analyses
each one), each step in a fresh process: wall seconds, sentences/s and the peak resident
memory above the process's baseline; plus what the head's input costs at 450k rows.
``uptime`` load is printed with the figures: the machine may be shared.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_module
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import KOTE_FILES, data_folder  # noqa: E402
from kote_text import load_kote  # noqa: E402

SEVEN = ("기쁨", "슬픔", "화남/분노", "공포/무서움", "놀람", "역겨움/징그러움", "없음")
NONE_LABEL = "없음"
LR_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
NEW, OLD = "kiwi-sparse", "kiwi-tfidf"
ENCODE_BATCH = 512
HEAD_ROWS = 450_000


def load(root: Path) -> tuple[list[str], list[set[str]], list[str]]:
    """Pooled KOTE comments, their emotion-name sets, and the label names by frequency."""
    kote = load_kote(root)
    names = kote["names"]
    texts, sets = [], []
    for part in ("train", "test"):
        for text, labels in zip(*kote[part], strict=True):
            texts.append(text)
            sets.append({names[i] for i in labels})
    counts = Counter(name for s in sets for name in s)
    return texts, sets, [n for n, _ in counts.most_common()]


def tasks(
    texts: list[str], sets: list[set[str]], by_frequency: list[str], emotions: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task name -> (texts, string labels)."""
    out = {}
    one = [(t, next(iter(s & set(SEVEN)))) for t, s in zip(texts, sets, strict=True)
           if len(s & set(SEVEN)) == 1]  # fmt: skip
    out["seven"] = (np.array([t for t, _ in one]), np.array([lab for _, lab in one]))
    for emotion in [e for e in by_frequency if e != NONE_LABEL][:emotions]:
        labels = np.array([emotion if emotion in s else "rest" for s in sets])
        out[f"ovr:{emotion}"] = (np.array(texts), labels)
    return out


def split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    rest, test = train_test_split(rows, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=0.125, stratify=labels[rest], random_state=seed
    )  # 0.125 of 80 % = 10 %
    return {"train": train, "val": val, "test": test}


def subsample(rows: np.ndarray, labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    if size is None or size >= len(rows):
        return rows
    kept, _ = train_test_split(rows, train_size=size, stratify=labels[rows], random_state=seed)
    return np.sort(kept)


def uar(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(truth, predicted))


def branch_uar(spec: str, texts, labels, parts) -> tuple[dict[str, float], dict[str, Any]]:
    """Encoder fitted on the training rows, then the emofuse head: its default settings
    (a class-weighted loss, for UAR), and the same with ``class_weighting=False``."""
    from emofuse.encoders import build_encoder
    from emofuse.head.train import TrainConfig, fit_head
    from emofuse.text import clean_text

    classes = sorted(set(labels))
    y = np.searchsorted(classes, labels)
    encoder = build_encoder(spec, "text")
    train = [clean_text(t) for t in texts[parts["train"]]]
    start = time.perf_counter()
    if encoder.needs_labels:
        encoder.fit(train, list(labels[parts["train"]]))
    else:
        encoder.fit(train)
    fit_s = time.perf_counter() - start
    x = {p: encoder.encode([clean_text(t) for t in texts[rows]]) for p, rows in parts.items()}
    scores = {}
    for name, config in (("head", TrainConfig()), ("head uw", TrainConfig(class_weighting=False))):
        head = fit_head(
            x["train"], y[parts["train"]], x["val"], y[parts["val"]], config=config,
            n_classes=len(classes), input_dims={"text": encoder.dim}, progress=False,
        )  # fmt: skip
        scores[name] = uar(y[parts["test"]], head.predict(x["test"]))
    info = {"dim": encoder.dim, "fit s": fit_s}
    if hasattr(encoder, "chosen_c"):
        info["C"] = encoder.chosen_c
    return scores, info


def sparse_tfidf(texts: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """Kiwi morpheme 1-2 + char_wb 1-3 TF-IDF fitted on the training rows, per part."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    from emofuse.encoders.kiwi_features import morpheme_ngrams, shared_kiwi, tokenizer_form

    docs = [tokenizer_form(t) for t in texts]
    kiwi = shared_kiwi()
    morphs = [
        morpheme_ngrams([f"{t.form}/{t.tag}" for t in tokens], (1, 2))
        for tokens in kiwi.tokenize(docs)
    ]
    common = {"sublinear_tf": True, "max_features": 50_000, "lowercase": False}
    morph = TfidfVectorizer(analyzer=lambda tokens: tokens, **common)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), **common)
    train = parts["train"]
    morph.fit([morphs[i] for i in train])
    char.fit([docs[i] for i in train])
    weight = 1 / np.sqrt(2)
    return {
        part: sp.hstack(
            [morph.transform([morphs[i] for i in rows]), char.transform([docs[i] for i in rows])],
            format="csr",
        )
        * weight
        for part, rows in parts.items()
    }


def lr_uars(texts, labels, parts) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    x = sparse_tfidf(texts, parts)
    y = {p: labels[rows] for p, rows in parts.items()}

    def fit(c: float, weight: str | None) -> Any:
        return LogisticRegression(C=c, class_weight=weight, max_iter=2000).fit(
            x["train"], y["train"]
        )

    out = {
        "sparse LR C=1": uar(y["test"], fit(1.0, None).predict(x["test"])),
        "sparse LR balanced C=1": uar(y["test"], fit(1.0, "balanced").predict(x["test"])),
    }
    models = {c: fit(c, "balanced") for c in LR_GRID}
    best = max(LR_GRID, key=lambda c: uar(y["val"], models[c].predict(x["val"])))
    out["sparse LR balanced C=val-best"] = uar(y["test"], models[best].predict(x["test"]))
    out["LR C picked"] = best
    return out


def accuracy(args: argparse.Namespace) -> pd.DataFrame:
    texts, sets, frequent = load(args.kote)
    rows = []
    for task, (task_texts, labels) in tasks(texts, sets, frequent, args.emotions).items():
        for seed in args.seeds:
            parts = split(labels, seed)
            n_train = len(parts["train"])
            for size in args.sizes:
                if size is not None and size >= n_train and None in args.sizes:
                    continue  # the same as "all"
                train = subsample(parts["train"], labels, size, seed)
                sized = {**parts, "train": train}
                row: dict[str, Any] = {"task": task, "seed": seed, "train n": len(train)}
                print(f"{task} seed {seed}: {len(train)} training comments", file=sys.stderr)
                for spec in (NEW, OLD):
                    scores, info = branch_uar(spec, task_texts, labels, sized)
                    row[f"{spec} + head"] = scores["head"]
                    row[f"{spec} + head uw"] = scores["head uw"]
                    row[f"{spec} fit s"] = info["fit s"]
                    if "C" in info:
                        row[f"{spec} C"] = info["C"]
                row.update(lr_uars(task_texts, labels, sized))
                lrs = [k for k in row if k.startswith("sparse LR")]
                row["best LR"] = max(row[k] for k in lrs)
                row["new - best LR"] = row[f"{NEW} + head"] - row["best LR"]
                row["new uw - best LR"] = row[f"{NEW} + head uw"] - row["best LR"]
                rows.append(row)
                print(pd.Series(row).to_string(), file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


# -- cost ----------------------------------------------------------------------------------
def distinct_copies(texts: list[str], n: int) -> list[str]:
    """``n`` comments: KOTE repeated, copy k > 0 with `` #k`` appended (all distinct)."""
    out = []
    k = 0
    while len(out) < n:
        out.extend(t if k == 0 else f"{t} #{k}" for t in texts[: n - len(out)])
        k += 1
    return out


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cost_child(
    stage: str, spec: str, texts: list[str], labels: list[str], state: str, queue
) -> None:
    from emofuse.encoders import build_encoder

    encoder = build_encoder(spec, "text")
    if stage == "encode":
        encoder.load_state(state)
    import emofuse.encoders.kiwi_tfidf as kt

    kt.shared_kiwi().tokenize(["준비"])  # Kiwi loaded before the baseline
    base = _peak_mb()
    start = time.perf_counter()
    if stage == "fit":
        encoder.fit(texts, labels) if encoder.needs_labels else encoder.fit(texts)
        encoder.save_state(state)
    else:
        for i in range(0, len(texts), ENCODE_BATCH):
            encoder.encode(texts[i : i + ENCODE_BATCH])
    queue.put((time.perf_counter() - start, _peak_mb() - base, _peak_mb()))


def cost(args: argparse.Namespace) -> pd.DataFrame:
    texts, sets, frequent = load(args.kote)
    _, seven_labels = tasks(texts, sets, frequent, 0)["seven"]
    # Labels for every comment: the first of the Korean seven it carries, else "other"
    # (8 classes, like a 7-emotion corpus plus one).
    labels_all = [next((e for e in SEVEN if e in s), "other") for s in sets]
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.scale:
        corpus = distinct_copies(texts, n)
        labels = (labels_all * (n // len(labels_all) + 1))[:n]
        for spec in (OLD, NEW):
            with tempfile.TemporaryDirectory() as state:
                row: dict[str, Any] = {"sentences": n, "encoder": spec}
                for stage in ("fit", "encode"):
                    queue = ctx.Queue()
                    child = ctx.Process(
                        target=_cost_child, args=(stage, spec, corpus, labels, state, queue)
                    )
                    child.start()
                    try:
                        seconds, extra_mb, peak_mb = queue.get(timeout=args.step_timeout)
                    except queue_module.Empty:
                        child.kill()
                        row[f"{stage} s"] = f">{args.step_timeout:.0f} (stopped)"
                        break
                    finally:
                        child.join()
                    row[f"{stage} s"] = seconds
                    row[f"{stage} sent/s"] = n / seconds
                    row[f"{stage} +MB"] = extra_mb
                    row[f"{stage} peak MB"] = peak_mb
                row["state MB"] = sum(f.stat().st_size for f in Path(state).rglob("*")) / 2**20
                rows.append(row)
                print(pd.Series(row).to_string(), file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def write_manifest(root: Path, path: Path) -> None:
    texts, sets, frequent = load(root)
    task_texts, labels = tasks(texts, sets, frequent, 0)["seven"]
    frame = pd.DataFrame({"id": [f"kote-{i}" for i in range(len(labels))], "text": task_texts})
    frame["label"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} comments ({frame['label'].nunique()} labels) to {path}")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average: {os.getloadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kote", type=Path, default=None, help="KOTE folder")
    parser.add_argument("--sizes", default="1000,5000,all", help="training sizes ('all')")
    parser.add_argument("--emotions", type=int, default=2, help="one-vs-rest tasks")
    parser.add_argument("--seeds", default="0", help="split seeds, comma-separated")
    parser.add_argument("--scale", default="10000,100000", help="sentences for the cost part")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads")
    parser.add_argument(
        "--step-timeout", type=float, default=1800, help="cost part: seconds per step at most"
    )
    parser.add_argument(
        "--write-manifest",
        type=Path,
        help="write the 'seven' task as a text-only manifest (text, label, id) and stop",
    )
    args = parser.parse_args()
    data_folder(args.kote, "--kote", "KOTE", KOTE_FILES)
    args.sizes = [None if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.scale = [int(s) for s in args.scale.split(",") if s.strip()]
    if args.write_manifest:
        write_manifest(args.kote, args.write_manifest)
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the cost part's fresh processes
    print(f"start: {uptime()}; {args.threads} BLAS/OpenMP thread(s)")
    pd.set_option("display.width", 200)
    if not args.skip_accuracy:
        table = accuracy(args)
        shown = [
            "task", "seed", "train n", f"{NEW} + head", f"{NEW} + head uw", f"{OLD} + head",
            f"{OLD} + head uw", "sparse LR C=1", "sparse LR balanced C=1",
            "sparse LR balanced C=val-best", "new - best LR", "new uw - best LR",
            f"{NEW} C", "LR C picked", f"{NEW} fit s", f"{OLD} fit s",
        ]  # fmt: skip
        print(
            "\nTest UAR (balanced accuracy); head = emofuse's default TrainConfig (class-weighted "
            "loss), head uw = the same with class_weighting=False"
        )
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for column in ("new - best LR", "new uw - best LR"):
            print(f"{column}, worst cell: {table[column].min():+.3f}")
        print(f"after accuracy: {uptime()}")
    if not args.skip_cost and args.scale:
        table = cost(args)
        print("\nCost of fitting / encoding (fresh process per step; +MB = peak RSS above "
              f"the process after loading Kiwi; encode in batches of {ENCODE_BATCH})")  # fmt: skip
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="-"))
        print(
            f"head input at {HEAD_ROWS:,} rows (float32): kiwi-sparse 7 classes "
            f"{HEAD_ROWS * 7 * 4 / 2**20:.0f} MB; kiwi-tfidf 256-d "
            f"{HEAD_ROWS * 256 * 4 / 2**20:.0f} MB (x2 more while the head standardises in "
            "float64)"
        )
        print(f"after cost: {uptime()}")


if __name__ == "__main__":
    main()
