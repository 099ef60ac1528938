"""Which clip to label next: the strategies of `emofuse suggest` against random and the
paper's longest-first order, as UAR against the number of labels.

Protocol (issue "Label what matters next"): leave-one-speaker-out on EmoDB (``--emodb
MANIFEST``, the six speakers of the shared part: the pool is five speakers, the test the
sixth, rotating) and on the demo corpus with 8 speakers (``--demo DIR``, written by
``emofuse demo-data --speakers 8`` when absent); offline speech vectors
(egemaps+resemblyzer, cached in ``--cache``). Each run starts from 2 labelled clips per
emotion drawn at random from the pool (the same draw for every strategy of a seed), then
adds ``--step`` clips a round, chosen by the strategy, up to ``--budget`` labels; after
each round the model is retrained and scored on the test speaker.

The model retrained each round is the library's fast path: the head's class-balanced
logistic regression (``emofuse.head.cv.logistic_path``, C = ``--c``, warm-started from
the previous round's weights, tolerance of the model selection's cross-validation) on
vectors standardised over the pool. Strategies (``--strategies``):

- ``random``: the pool in a seeded random order (what a person without a tool does);
- ``longest``: the paper's best order, longest clips first within each emotion, the
  emotions taking turns. It reads the true labels, which an unlabelled pool does not have:
  an upper bound for "balanced by emotion", not a strategy one can run;
- ``diverse``, ``uncertainty``, ``hybrid``: ``emofuse.active.strategies.rank``, what
  `emofuse suggest` runs, given the model's probabilities on the unlabelled pool, the
  standardised vectors, the labels and the speakers of the clips labelled so far;
- ``hybrid-no-speakers``: ``hybrid`` on a pool without a speaker column;
- ``kcenter-uncertain``: the design the issue simulated first, k-center greedy over the
  most uncertain quarter of the pool.

    python bench/active_learning.py --emodb ../shared/data/emodb/manifest.csv \\
        --demo /tmp/speaker_adapt_cache/demo8 --cache /tmp/speaker_adapt_cache \\
        --out /tmp/active_learning

``--skew 0.2`` makes each pool imbalanced, as a pool of real calls is (neutral in full,
a fifth of every other emotion), where sharing the picks over emotions should matter
most; the two corpora as shipped are close to balanced.

Writes ``results.csv`` (one row per run and round), ``summary.md`` and
``active_learning.png`` into ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = (
    "random", "longest", "diverse", "uncertainty", "hybrid", "hybrid-no-speakers",
    "kcenter-uncertain",
)  # fmt: skip
#: The share of the pool, most uncertain first, that kcenter-uncertain spreads over.
KCENTER_SHARE = 0.25


@dataclass
class Data:
    """One corpus as the bench needs it: vectors, class indices, speakers, durations."""

    name: str
    labels: list[str]
    x: np.ndarray
    y: np.ndarray
    speakers: np.ndarray
    duration_s: np.ndarray


def load(name: str, source: Path, cache: Path) -> Data:
    """The corpus's offline speech vectors, computed once into ``cache`` and reused."""
    from speaker_adapt import load_corpus

    corpus = load_corpus(name, source, cache)
    durations = corpus.table["duration_s"].astype(float).to_numpy()
    return Data(name, corpus.labels, corpus.x.astype(np.float64), corpus.y, corpus.speakers,
                durations)  # fmt: skip


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def skewed(data: Data, pool: np.ndarray, keep: float, by: str, seed: int) -> np.ndarray:
    """The pool as it is (``keep`` 1), or imbalanced as a pool of real calls is: by
    emotion, ``neutral`` (else the most frequent emotion) in full and a seeded random
    ``keep`` share of every other emotion's clips; by speaker, the first speaker in full
    and ``keep`` of every other's."""
    if keep >= 1:
        return pool
    groups = data.y[pool] if by == "emotion" else data.speakers[pool]
    if by == "emotion":
        counts = np.bincount(data.y[pool], minlength=len(data.labels))
        full = data.labels.index("neutral") if "neutral" in data.labels else int(np.argmax(counts))
    else:
        full = sorted(set(groups.tolist()))[0]
    rng = np.random.default_rng([seed, 7])
    kept = [pool[groups == full]]
    for group in sorted(set(groups.tolist()) - {full}):
        mine = pool[groups == group]
        kept.append(rng.choice(mine, max(4, int(np.ceil(keep * len(mine)))), replace=False))
    return np.sort(np.concatenate(kept))


def longest_order(data: Data, pool: np.ndarray) -> np.ndarray:
    """The pool's clips, emotions taking turns, each giving its longest clip left."""
    queues = []
    for c in range(len(data.labels)):
        mine = pool[data.y[pool] == c]
        queues.append(list(mine[np.argsort(-data.duration_s[mine], kind="stable")]))
    depth = max(len(q) for q in queues)
    return np.asarray([q[d] for d in range(depth) for q in queues if d < len(q)], dtype=int)


def pick(
    strategy: str, n: int, proba: np.ndarray, xs: np.ndarray, data: Data,
    unlabelled: np.ndarray, labelled: np.ndarray, seed: int,
) -> np.ndarray:  # fmt: skip
    """Positions (into ``unlabelled``) of the next ``n`` clips to label."""
    from emofuse.active.strategies import most_uncertain_first, rank
    from emofuse.sampling import k_center_order

    if strategy == "kcenter-uncertain":
        order = np.random.default_rng(seed).permutation(len(proba))
        share = max(n, int(np.ceil(KCENTER_SHARE * len(proba))))
        rows = most_uncertain_first(proba, order)[:share]
        return rows[k_center_order(xs[unlabelled[rows]], n, picked_before=xs[labelled])]
    name = "hybrid" if strategy == "hybrid-no-speakers" else strategy
    with_speakers = strategy == "hybrid"
    return rank(
        name, n, proba,
        vectors=xs[unlabelled] if name == "diverse" else None,
        rows=np.arange(len(unlabelled)) if name == "diverse" else None,
        labelled_vectors=xs[labelled] if name == "diverse" else None,
        labelled_classes=data.y[labelled],
        speakers=data.speakers[unlabelled] if with_speakers else None,
        labelled_speakers=data.speakers[labelled] if with_speakers else None,
        seed=seed,
    )  # fmt: skip


def run(data: Data, fold: str, seed: int, strategy: str, args) -> list[dict]:
    """One learning curve: UAR on the test speaker after each round."""
    from emofuse.head.cv import CV_TOLERANCE, logistic_path
    from emofuse.metrics import unweighted_average_recall

    k = len(data.labels)
    test = np.flatnonzero(data.speakers == fold)
    pool = skewed(data, np.flatnonzero(data.speakers != fold), args.skew, args.skew_by, seed)
    mean, std = data.x[pool].mean(axis=0), data.x[pool].std(axis=0)
    xs = (data.x - mean) / np.where(std < 1e-8, 1.0, std)
    fold_index = sorted(set(data.speakers)).index(fold)
    rng = np.random.default_rng([seed, fold_index])
    if strategy == "longest":
        order = longest_order(data, pool)
        labelled = order[: args.start * k]
    else:
        labelled = np.concatenate(
            [rng.choice(pool[data.y[pool] == c], args.start, replace=False) for c in range(k)]
        )
    rows, weights, started = [], None, time.process_time()
    while True:
        weights = logistic_path(
            xs[labelled], data.y[labelled], k, [args.c], tolerance=CV_TOLERANCE, init=weights
        )[args.c]
        predicted = (xs[test] @ weights[0].T + weights[1]).argmax(axis=1)
        rows.append({"corpus": data.name, "fold": fold, "seed": seed, "strategy": strategy,
                     "labels": len(labelled),
                     "uar": unweighted_average_recall(data.y[test], predicted, k)})  # fmt: skip
        if len(labelled) >= args.budget:
            break
        n = min(args.step, args.budget - len(labelled))
        if strategy == "longest":
            labelled = order[: len(labelled) + n]
            continue
        unlabelled = np.setdiff1d(pool, labelled)
        proba = softmax(xs[unlabelled] @ weights[0].T + weights[1])
        chosen = pick(strategy, n, proba, xs, data, unlabelled, labelled,
                      seed * 100_003 + len(labelled))  # fmt: skip
        labelled = np.concatenate([labelled, unlabelled[chosen]])
    for row in rows:
        row["cpu_s"] = (time.process_time() - started) / len(rows)
    return rows


# ---------------------------------------------------------------------- report


def reached_at(curve: pd.Series, target: float) -> int | None:
    """The fewest labels at which the mean curve reaches ``target``."""
    hit = curve[curve >= target - 1e-12]
    return int(hit.index[0]) if len(hit) else None


def markdown(results: pd.DataFrame, meta: dict) -> str:
    lines = [f"# Active learning bench ({meta['when']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "when"]
    for corpus in results["corpus"].unique():
        part = results[results["corpus"] == corpus]
        per_seed = part.groupby(["strategy", "labels", "seed"])["uar"].mean().reset_index()
        mean = per_seed.groupby(["strategy", "labels"])["uar"].mean().unstack("labels")
        std = per_seed.groupby(["strategy", "labels"])["uar"].std().unstack("labels")
        sizes = list(mean.columns)
        shown = sizes[::2] if sizes[-1] in sizes[::2] else [*sizes[::2], sizes[-1]]
        strategies = [s for s in STRATEGIES if s in mean.index]
        target = mean.loc["random", sizes[-1]] if "random" in mean.index else None
        folds, seeds = part["fold"].nunique(), part["seed"].nunique()
        lines += ["", f"## {corpus}: UAR against the number of labels", "",
                  f"Mean over {folds} test speakers and {seeds} seeds (± std over seeds at "
                  f"{sizes[-1]}); last column: the fewest labels at which the strategy "
                  f"reaches random's UAR at {sizes[-1]}"
                  + (f" ({target:.3f}; target ≤ {int(0.7 * sizes[-1])})" if target else ""),
                  "", "| strategy | " + " | ".join(str(n) for n in shown)
                  + " | reaches random |", "|---|" + "---|" * (len(shown) + 1)]  # fmt: skip
        for s in strategies:
            cells = [f"{mean.loc[s, n]:.3f}" for n in shown]
            cells[-1] += f" ± {std.loc[s, sizes[-1]]:.3f}"
            at = reached_at(mean.loc[s], target) if target is not None else None
            mark = "" if at is None or s == "random" else (" ✓" if at <= 0.7 * sizes[-1] else "")
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {at if at else '—'}{mark} |")
        cpu = part.groupby("strategy")["cpu_s"].mean()
        lines += ["", "CPU s per round (fit + pick): " + ", ".join(
            f"{s} {cpu[s]:.3f}" for s in strategies)]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emofuse.palette import label_colours

    corpora = list(results["corpus"].unique())
    colours = label_colours(list(STRATEGIES))
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.2), squeeze=False)
    for ax, corpus in zip(axes[0], corpora, strict=True):
        part = results[results["corpus"] == corpus]
        curves = part.groupby(["strategy", "labels"])["uar"].mean().unstack("labels")
        for s in [s for s in STRATEGIES if s in curves.index]:
            style = "--" if s in ("longest", "hybrid-no-speakers", "kcenter-uncertain") else "-"
            ax.plot(curves.columns, curves.loc[s], style, color=colours[s], label=s,
                    linewidth=2.2 if s == "hybrid" else 1.4)  # fmt: skip
        if "random" in curves.index:
            ax.axhline(curves.loc["random"].iloc[-1], color="#888888", linewidth=0.8, alpha=0.6)
        ax.set_title(f"{corpus}: {part['fold'].nunique()} test speakers × "
                     f"{part['seed'].nunique()} seeds")  # fmt: skip
        ax.set_xlabel("labelled clips")
        ax.set_ylabel("UAR on the held-out speaker")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: pd.DataFrame, out: Path, meta: dict) -> None:
    text = markdown(results, meta)
    (out / "summary.md").write_text(text)
    plot(results, out / "active_learning.png")
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emodb", type=Path, help="EmoDB manifest.csv")
    parser.add_argument("--demo", type=Path, help="demo corpus with 8 speakers (written if absent)")
    parser.add_argument("--cache", type=Path, help="feature stores (reused)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=0, help="first K test speakers (0: all)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--start", type=int, default=2, help="labelled clips per emotion at first")
    parser.add_argument("--step", type=int, default=7, help="clips added per round")
    parser.add_argument("--budget", type=int, default=140, help="labels at the end")
    parser.add_argument("--c", type=float, default=0.1, help="the logistic regression's C")
    parser.add_argument(
        "--skew", type=float, default=1.0, metavar="SHARE",
        help="an imbalanced pool: neutral (or the first speaker) in full, SHARE of every "
        "other emotion (speaker) (default 1: the pool as it is)",
    )  # fmt: skip
    parser.add_argument(
        "--skew-by", choices=("emotion", "speaker"), default="emotion",
        help="what --skew makes imbalanced (default: emotion)",
    )  # fmt: skip
    parser.add_argument("--report-only", action="store_true", help="summary of results.csv")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.report_only:
        report(pd.read_csv(args.out / "results.csv"), args.out, {"when": when})
        return
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if args.cache is None:
        parser.error("--cache DIR is required (the feature stores, computed once)")
    from speaker_adapt import demo_source
    from tqdm.auto import tqdm

    args.cache.mkdir(parents=True, exist_ok=True)
    corpora = []
    if args.emodb is not None:
        if not args.emodb.is_file():
            raise SystemExit(f"{args.emodb}: no such file; pass --emodb PATH/emodb/manifest.csv")
        corpora.append(load("emodb", args.emodb, args.cache))
    if args.demo is not None:
        corpora.append(load("demo8", demo_source(args.demo), args.cache))
    if not corpora:
        parser.error("pass --emodb MANIFEST and/or --demo DIR")
    load_start, start = os.getloadavg(), time.time()
    cells = [
        (data, fold, seed, strategy)
        for data in corpora
        for fold in sorted(set(data.speakers))[: args.folds or None]
        for seed in range(args.seeds)
        for strategy in strategies
    ]
    rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch on read-only numpy views
        for data, fold, seed, strategy in tqdm(cells, desc="curves", unit="curve"):
            rows += run(data, fold, seed, strategy, args)
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "results.csv", index=False)
    meta = {
        "when": when,
        "features": "egemaps+resemblyzer (offline speech vectors), standardised over the pool",
        "model retrained each round": f"class-balanced logistic regression, C={args.c:g} "
        "(emofuse.head.cv.logistic_path, warm-started)",
        "rounds": f"{args.start} clips per emotion at random, +{args.step} a round, "
        f"up to {args.budget}",
        "pool": "as it is"
        if args.skew >= 1
        else f"skewed by {args.skew_by}: "
        + ("neutral" if args.skew_by == "emotion" else "the first speaker")
        + f" in full, {args.skew:g} of every other",
        "run time": f"{time.time() - start:.0f} s",
        "load (1/5/15-min) at start / end": f"{load_start} / {os.getloadavg()} on "
        f"{os.cpu_count()} cores",
    }
    report(results, args.out, meta)


if __name__ == "__main__":
    main()
