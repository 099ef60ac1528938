"""Learning curves of the head recipes against a logistic regression, on held-out people
or sentences, from cached offline features (egemaps+resemblyzer).

For every corpus, fold, clips-per-emotion N and seed:
- the training part is sampled to N clips per emotion (random), and each method is
  trained on exactly those rows: the default recipe, ``paper``, the default recipe
  without its logistic-regression blend (``no-blend``), without its class-weighted loss
  (``unweighted``), with a ``linear`` head and with the paper's ``mlp`` head, and a
  standardised scikit-learn ``LogisticRegression`` (C=1, lbfgs).
  The recipes pick their epoch (and, when they refit, train on) the val part; the
  logistic regression is reported twice: on the train rows only (``logreg``) and on train
  + val (``logreg+val``, the same labelled clips the refitting recipe sees);
- the default recipe again with the other selection strategies (shortest, longest,
  diverse, speaker-balanced);
- the default recipe's expected calibration error on the test part before and after
  temperature scaling fitted on the val part.

Corpora: EmoDB (``--emodb MANIFEST``; leave-one-speaker-out: each fold tests one
speaker, the next speaker is val, the rest train) and the demo corpus (``--demo DIR``,
written by ``emofuse demo-data`` when absent; script-disjoint: scripts in K groups, one
group tests, 1/5 of the other scripts are val). ``--folds`` keeps the first few folds to
bound the run time. Features are computed once into ``--cache`` (a feature store per
corpus, outside the repository) and reused.

    python bench/learning_curves.py --emodb ../shared/data/emodb/manifest.csv \\
        --demo /tmp/demo-corpus --cache /tmp/emofuse-cache --out /tmp/curves

Writes ``results.csv`` (one row per fit), ``summary.md`` (mean ± std over seeds of the
fold-averaged UAR), ``learning_curves.png`` and ``selection.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

SPEECH = "egemaps+resemblyzer"
ALL = 0  # N = "all" in the results


@dataclass
class Corpus:
    name: str
    table: pd.DataFrame
    labels: list[str]
    x: np.ndarray
    y: np.ndarray
    folds: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]  # name, train, val, test


def load_features(table: pd.DataFrame, cache: Path, name: str) -> np.ndarray:
    from emofuse.features import FeatureStore, extract_features

    store = FeatureStore(cache / f"{name}-store")
    encoders = extract_features(table, store=store, speech=SPEECH, progress=False)
    return store.get(table, encoders["speech"]).astype(np.float32)


def emodb_corpus(manifest: Path, cache: Path) -> Corpus:
    from emofuse.corpus import read_corpus

    if not manifest.exists():
        raise SystemExit(f"{manifest}: no such EmoDB manifest; pass --emodb PATH/manifest.csv")
    scan = read_corpus(str(manifest))
    table = scan.table.reset_index(drop=True)
    speakers = sorted(table["speaker"].astype(str).unique())
    spk = table["speaker"].astype(str).to_numpy()
    folds = []
    for i, test_speaker in enumerate(speakers):
        val_speaker = speakers[(i + 1) % len(speakers)]
        test, val = spk == test_speaker, spk == val_speaker
        folds.append((test_speaker, *map(np.flatnonzero, (~test & ~val, val, test))))
    return _corpus("emodb", table, list(scan.labels), cache, folds)


def demo_corpus(directory: Path, cache: Path, k: int = 3) -> Corpus:
    from emofuse.corpus import read_corpus

    if not directory.exists():
        subprocess.run(
            [sys.executable, "-m", "emofuse", "demo-data", str(directory), "--no-progress"],
            check=True,
        )
    scan = read_corpus(str(directory))
    table = scan.table.reset_index(drop=True)
    script = table["script"].astype(str).to_numpy()
    scripts = np.array(sorted(set(script)))
    rng = np.random.default_rng(0)
    scripts = scripts[rng.permutation(len(scripts))]
    groups = np.array_split(scripts, k)
    folds = []
    for i, group in enumerate(groups):
        test = np.isin(script, group)
        others = np.concatenate([g for j, g in enumerate(groups) if j != i])
        val = np.isin(script, others[: max(1, len(others) // 5)])
        folds.append((f"scripts{i}", *map(np.flatnonzero, (~test & ~val, val, test))))
    return _corpus("demo", table, list(scan.labels), cache, folds)


def _corpus(name, table, labels, cache, folds) -> Corpus:
    x = load_features(table, cache, name)
    codes = {label: i for i, label in enumerate(labels)}
    y = table["label"].astype(str).map(codes).to_numpy()
    return Corpus(name, table, labels, x, y, folds)


def methods() -> dict:
    from emofuse.head.config import TrainConfig

    return {
        "default": TrainConfig(),
        "paper": TrainConfig(recipe="paper"),
        # the default recipe without its logistic-regression blend
        "no-blend": TrainConfig(logistic_blend=0.0),
        "unweighted": TrainConfig(class_weighting=False),  # no class-balanced loss
        "linear": TrainConfig(head="linear", dropout=0.0),  # default recipe, linear head
        "mlp": TrainConfig(head="mlp"),  # default recipe, the paper's head shape (no blend)
    }


def run_cell(corpus: Corpus, fold, n: int | None, seed: int, orders, configs) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emofuse.head.calibration import softmax
    from emofuse.head.train import fit_head
    from emofuse.metrics import expected_calibration_error, unweighted_average_recall
    from emofuse.sampling import SamplingShortfallWarning, sample_per_label

    name, train, val, test = fold
    x, y, k = corpus.x, corpus.y, len(corpus.labels)
    base = {"corpus": corpus.name, "fold": name, "N": n or ALL, "seed": seed}
    rows = []

    def uar(pred: np.ndarray) -> float:
        return unweighted_average_recall(y[test], pred, k)

    for order in orders:
        pool = corpus.table.iloc[train].assign(_row=train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SamplingShortfallWarning)
            picked = sample_per_label(
                pool, n, order=order, seed=seed, vectors=x[train] if order == "diverse" else None
            )["_row"].to_numpy()
        for method, config in configs.items():
            if order != "random" and method != "default":
                continue
            # calibrate=True only adds the temperature (labels, hence UAR, are unchanged)
            head = fit_head(
                x[picked], y[picked], x[val], y[val], n_classes=k,
                config=replace(config, seed=seed, calibrate=True), progress=False,
            )  # fmt: skip
            row = {**base, "order": order, "method": method, "train_rows": len(picked)}
            row["uar"] = uar(head.predict(x[test]))
            if method == "default" and order == "random":
                # the temperature fit_head fitted on val before the refit on train + val
                # (refitting it here on the refit model's val logits would be fitting on
                # training data)
                logits = head.logits(x[test])
                t = head.temperature
                row["temperature"] = t
                row["ece_before"] = expected_calibration_error(y[test], softmax(logits))
                row["ece_after"] = expected_calibration_error(y[test], softmax(logits, t))
            rows.append(row)
        if order != "random":
            continue
        for method, fit_rows in (("logreg", picked), ("logreg+val", np.concatenate([picked, val]))):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
            model.fit(x[fit_rows], y[fit_rows])
            rows.append(
                {**base, "order": order, "method": method, "train_rows": len(fit_rows),
                 "uar": uar(model.predict(x[test]))}
            )  # fmt: skip
    return rows


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of the UAR averaged over folds, per corpus/method/order/N."""
    keys = ["corpus", "order", "method", "N"]
    per_seed = results.groupby([*keys, "seed"])["uar"].mean().reset_index()
    out = per_seed.groupby(keys)["uar"].agg(["mean", "std", "count"]).reset_index()
    return out


def _n_name(n: int) -> str:
    return "all" if n == ALL else str(n)


def markdown(results: pd.DataFrame, summary: pd.DataFrame, meta: dict) -> str:
    lines = [f"# Learning curves ({meta['when']})", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "when"]
    for corpus in summary["corpus"].unique():
        part = summary[summary["corpus"] == corpus]
        sizes = sorted(part["N"].unique(), key=lambda n: (n == ALL, n))
        lines += ["", f"## {corpus}: UAR on held-out folds (mean ± std over seeds)", ""]
        lines += ["| method | order | " + " | ".join(f"N={_n_name(n)}" for n in sizes) + " |"]
        lines += ["|---|---|" + "---|" * len(sizes)]
        for (method, order), group in part.groupby(["method", "order"], sort=False):
            cells = []
            for n in sizes:
                hit = group[group["N"] == n]
                cells.append(
                    f"{hit['mean'].iloc[0]:.3f} ± {hit['std'].iloc[0]:.3f}" if len(hit) else ""
                )
            lines.append(f"| {method} | {order} | " + " | ".join(cells) + " |")
        random = part[part["order"] == "random"].set_index(["method", "N"])["mean"]
        for baseline in ("logreg", "logreg+val"):
            if ("default", sizes[0]) in random and (baseline, sizes[0]) in random:
                gaps = [random[("default", n)] - random[(baseline, n)] for n in sizes]
                lines += ["", f"default − {baseline}: " + ", ".join(
                    f"N={_n_name(n)} {g:+.3f}" for n, g in zip(sizes, gaps, strict=True))]  # fmt: skip
        cal = results[(results["corpus"] == corpus) & results["ece_before"].notna()]
        if len(cal):
            lines += ["", f"Calibration of the default recipe on {corpus} (test part, mean "
                      "over folds and seeds; temperature fitted on val):", ""]  # fmt: skip
            lines += ["| N | ECE before | ECE after | temperature (median) |", "|---|---|---|---|"]
            for n, group in cal.groupby("N"):
                lines.append(
                    f"| {_n_name(n)} | {group['ece_before'].mean():.3f} | "
                    f"{group['ece_after'].mean():.3f} | {group['temperature'].median():.2f} |"
                )
    return "\n".join(lines) + "\n"


def plot(summary: pd.DataFrame, path: Path, *, orders: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(summary["corpus"].unique())
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.5), squeeze=False)
    for ax, corpus in zip(axes[0], corpora, strict=True):
        part = summary[summary["corpus"] == corpus]
        part = part[part["order"] != "random"] if orders else part[part["order"] == "random"]
        if orders:
            part = pd.concat(
                [
                    part,
                    summary[
                        (summary["corpus"] == corpus)
                        & (summary["order"] == "random")
                        & (summary["method"] == "default")
                    ],
                ]  # fmt: skip
            )
        sizes = sorted(part["N"].unique(), key=lambda n: (n == ALL, n))
        xs = np.arange(len(sizes))
        key = "order" if orders else "method"
        for name, group in part.groupby(key, sort=False):
            group = group.set_index("N").reindex(sizes)
            ax.plot(xs, group["mean"], marker="o", label=name)
            ax.fill_between(
                xs, group["mean"] - group["std"], group["mean"] + group["std"], alpha=0.15
            )
        ax.set_xticks(xs, [_n_name(n) for n in sizes])
        ax.set_xlabel("clips per emotion (N)")
        ax.set_ylabel("UAR on held-out folds")
        ax.set_title(f"{corpus}: " + ("selection strategies (default recipe)" if orders else
                                      "recipes vs logistic regression"))  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emodb", type=Path, help="EmoDB manifest.csv (leave-one-speaker-out)")
    parser.add_argument("--demo", type=Path, help="demo corpus folder (written when absent)")
    parser.add_argument("--cache", type=Path, required=True, help="feature stores (reused)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--sizes", default="5,10,20,50,all", help="clips per emotion")
    parser.add_argument(
        "--report-only", action="store_true",
        help="rewrite summary.md and the plots from --out/results.csv (e.g. of a stopped run)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--order-seeds", type=int, default=5,
        help="seeds for the selection strategies other than random (<= --seeds)",
    )  # fmt: skip
    parser.add_argument("--folds", type=int, default=0, help="first K folds only (0: all)")
    parser.add_argument(
        "--orders", default="random,shortest,longest,diverse,speaker-balanced",
        help="selection strategies (random is always run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.report_only:
        results = pd.read_csv(args.out / "results.csv")
        report(results, args.out, {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "rows": f"{len(results)} fits from results.csv"})  # fmt: skip
        return
    if args.emodb is None and args.demo is None:
        parser.error("pass --emodb MANIFEST and/or --demo DIR")
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(1)  # a shared machine: one core per run
    load_start = os.getloadavg()[0]
    sizes = [None if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    orders = ["random", *[o for o in args.orders.split(",") if o and o != "random"]]
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    corpora = []
    if args.emodb is not None:
        corpora.append(emodb_corpus(args.emodb, args.cache))
    if args.demo is not None:
        corpora.append(demo_corpus(args.demo, args.cache))
    features_s = time.time() - start
    configs = methods()
    cells = [
        (corpus, fold, n, seed)
        for corpus in corpora
        for fold, n, seed in itertools.product(
            corpus.folds[: args.folds or None], sizes, range(args.seeds)
        )
    ]
    rows = []
    for corpus, fold, n, seed in tqdm(cells, desc="cells", unit="cell"):
        cell_orders = orders if seed < args.order_seeds else orders[:1]
        rows += run_cell(corpus, fold, n, seed, cell_orders, configs)
        pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False)  # partial results
    results = pd.DataFrame(rows)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "features": f"{SPEECH} (cached in {args.cache}; {features_s:.0f} s to load/compute)",
        "folds": ", ".join(
            f"{c.name}: {len(c.folds[: args.folds or None])} of {len(c.folds)}" for c in corpora
        ),
        "seeds": f"{args.seeds} (selection strategies: {min(args.seeds, args.order_seeds)})",
        "default recipe": str(configs["default"]),
        "fits run in": f"{time.time() - start - features_s:.0f} s",
        "machine load (1-min average) at start / end": f"{load_start:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
    }
    report(results, args.out, meta)


def report(results: pd.DataFrame, out: Path, meta: dict) -> None:
    summary = summarise(results)
    (out / "summary.md").write_text(markdown(results, summary, meta))
    summary.to_csv(out / "summary.csv", index=False)
    plot(summary, out / "learning_curves.png", orders=False)
    if (summary["order"] != "random").any():
        plot(summary, out / "selection.png", orders=True)
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
