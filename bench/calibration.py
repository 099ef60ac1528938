"""Do the default recipe's probabilities mean what they say on people nobody trained on?

Leave-one-speaker-out on EmoDB (``--emodb MANIFEST``) and/or the demo corpus
(``--demo DIR``), offline speech vectors (egemaps+resemblyzer, cached in ``--cache``),
N clips per emotion (``--sizes``; 0 = all) and ``--seeds`` seeds. Each fold trains the
default recipe (model selection by CV, speaker normalisation off, as
``bench/speaker_adapt.py`` does) once and scores the held-out speaker's clips with:

- ``T = 1``: the head's logits as they are (before the CV temperature existed; with
  ``--z-limit inf`` also before the clip of standardised values);
- ``CV temperature``: divided by the temperature fitted on the winner's out-of-fold
  logits (:func:`emofuse.head.selection.cv_temperature`, what a bundle now stores);
- ``tuned LR``: the baseline, scikit-learn's class-balanced logistic regression with C by
  leave-one-speaker-out grid search (its own ``predict_proba``).

The labels (so UAR) of the first two are the same; what changes is the expected
calibration error (ECE, 15 bins), the negative log-likelihood and the gap between the
mean top probability and the accuracy (negative: under-confident). Every figure but "ECE
(mean of folds)" is of all held-out clips pooled (so UAR here is not the mean over folds
that ``bench/speaker_adapt.py`` reports).

    python bench/calibration.py --emodb ../shared/data/emodb/manifest.csv \\
        --cache /tmp/speaker_adapt_cache --sizes 10 20 0 --seeds 0 1 2 [--z-limit inf]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speaker_adapt import (  # noqa: E402
    ALL,
    Corpus,
    demo_source,
    load_corpus,
    sample_rows,
    tuned_logistic_search,
)


def measures(y: np.ndarray, proba: np.ndarray, k: int) -> dict[str, float]:
    from emofuse.metrics import (
        expected_calibration_error,
        negative_log_likelihood,
        unweighted_average_recall,
    )

    pred = proba.argmax(axis=1)
    return {
        "uar": unweighted_average_recall(y, pred, k),
        "ece": expected_calibration_error(y, proba),
        "nll": negative_log_likelihood(y, proba),
        "gap": float(proba.max(axis=1).mean() - (pred == y).mean()),
    }


def run_fold(corpus: Corpus, speaker: str, n: int, seed: int, pooled: dict) -> list[dict]:
    """One held-out speaker: a row of measures per method; each method's test labels and
    probabilities are appended to ``pooled[(corpus, N, seed, method)]``."""
    from emofuse.head.calibration import softmax
    from emofuse.head.config import TrainConfig
    from emofuse.head.selection import fit_selected, select_head

    x, y, spk, k = corpus.x, corpus.y, corpus.speakers, len(corpus.labels)
    test = np.flatnonzero(spk == speaker)
    train = sample_rows(corpus, np.flatnonzero(spk != speaker), n, seed)
    selection = select_head(
        x[train], y[train], n_classes=k, config=TrainConfig(seed=seed),
        input_dims=corpus.input_dims, speakers=spk[train], speaker_norm="off",
    )  # fmt: skip
    head, _ = fit_selected(
        selection, x[train], y[train], n_classes=k, input_dims=corpus.input_dims,
        speakers_train=spk[train],
    )  # fmt: skip
    logits = head.logits(x[test])
    base = {"corpus": corpus.name, "speaker": speaker, "N": n, "seed": seed}
    probabilities = {
        "T = 1": softmax(logits),
        "CV temperature": softmax(logits, selection.temperature),
        "tuned LR": tuned_logistic_search(x[train], y[train], spk[train]).predict_proba(x[test]),
    }
    rows = []
    for method, proba in probabilities.items():
        row = {**base, "method": method, **measures(y[test], proba, k)}
        if method == "CV temperature":
            row.update(temperature=selection.temperature, choice=selection.record.get("choice"))
        rows.append(row)
        truth, probs = pooled.setdefault((corpus.name, n, seed, method), ([], []))
        truth.append(y[test])
        probs.append(proba)
    return rows


def pooled_measures(pooled: dict, k_of: dict[str, int]) -> pd.DataFrame:
    """Measures of every fold's held-out clips together (per corpus, N, seed, method):
    ECE over a few dozen clips of one speaker is biased upwards, pooled much less."""
    rows = []
    for (corpus, n, seed, method), (truth, probs) in pooled.items():
        y, proba = np.concatenate(truth), np.concatenate(probs)
        rows.append({"corpus": corpus, "N": n, "seed": seed, "method": method,
                     **measures(y, proba, k_of[corpus])})  # fmt: skip
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame, pooled: pd.DataFrame, meta: str) -> str:
    """Means over seeds; ECE, NLL and the confidence gap of all held-out clips pooled
    (mean fold ECE beside them); the temperature's median and range over folds."""
    lines = [meta, ""]
    lines.append(
        "| corpus | N | method | UAR | ECE (pooled) | ECE (mean of folds) | NLL | "
        "confidence - accuracy | T median [min, max] |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    keys = ["corpus", "N", "method"]
    folds = results.groupby(keys, sort=False)
    for (corpus, n, method), group in pooled.groupby(keys, sort=False):
        per_fold = folds.get_group((corpus, n, method))
        t = per_fold["temperature"] if "temperature" in per_fold else pd.Series(dtype=float)
        t_text = f"{t.median():.2f} [{t.min():.2f}, {t.max():.2f}]" if t.notna().any() else ""
        lines.append(
            f"| {corpus} | {'all' if n == ALL else n} | {method} | {group['uar'].mean():.3f} "
            f"| {group['ece'].mean():.3f} | {per_fold['ece'].mean():.3f} "
            f"| {group['nll'].mean():.3f} | {group['gap'].mean():+.3f} | {t_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emodb", type=Path, help="EmoDB manifest.csv")
    parser.add_argument("--demo", type=Path, help="demo corpus folder (written when absent)")
    parser.add_argument("--cache", type=Path, required=True, help="feature stores (reused)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, ALL])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, default=0, help="first few speakers (0: all)")
    parser.add_argument("--out", type=Path, help="results.csv and summary.md here")
    parser.add_argument(
        "--z-limit", type=float, default=None,
        help="clip standardised values to +-this (default: emofuse's Z_LIMIT; inf: no clip, "
        "as before the clip existed)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.z_limit is not None:
        import emofuse.head.config

        emofuse.head.config.Z_LIMIT = args.z_limit
    args.cache.mkdir(parents=True, exist_ok=True)
    corpora = []
    if args.emodb is not None:
        corpora.append(load_corpus("emodb", args.emodb, args.cache))
    if args.demo is not None:
        corpora.append(load_corpus("demo8", demo_source(args.demo), args.cache))
    if not corpora:
        parser.error("pass --emodb MANIFEST and/or --demo DIR")
    began, rows, pooled = time.time(), [], {}
    for corpus in corpora:
        speakers = sorted(set(corpus.speakers))
        speakers = speakers[: args.folds] if args.folds else speakers
        for n in args.sizes:
            for seed in args.seeds:
                for speaker in speakers:
                    rows.extend(run_fold(corpus, speaker, n, seed, pooled))
                print(f"{corpus.name} N={n or 'all'} seed {seed}: done", file=sys.stderr)
    results = pd.DataFrame(rows)
    from emofuse.head.config import clip_limit

    meta = (
        f"leave-one-speaker-out, seeds {args.seeds}, standardised values clipped to "
        f"+-{clip_limit():g}, {time.time() - began:.0f} s, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    )
    together = pooled_measures(pooled, {c.name: len(c.labels) for c in corpora})
    text = markdown(results, together, meta)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        results.to_csv(args.out / "results.csv", index=False)
        (args.out / "summary.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
