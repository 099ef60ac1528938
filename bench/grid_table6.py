"""The Table 6 grid shape (7 sizes x shortest/longest x 3 seeds = 42 speech+text cells)
on cached features, against re-extracting features in every cell.

Measures, on EmoDB (default; --emodb DIR, the folder holding manifest.csv) or the demo
corpus:
1. the grid from a cold feature store (features once, then 42 cells);
2. the grid again with the store warm (results removed): cells only, end to end;
3. a few cells with their own extraction (fresh store each: speech for the cell's
   train + val + test clips, text fitted on the cell's own sample), to extrapolate what
   extracting per cell would cost for all 42 cells (seconds per clip x clips over cells).

    python bench/grid_table6.py --emodb DIR [--extract-cells 3] [--out DIR]
    python bench/grid_table6.py --corpus demo
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_data import emodb_folder


def grid_config(corpus: str, out: Path, emodb: Path | None = None):
    from emofuse.experiments.config import grid_config_from_dict

    if corpus == "emodb":
        manifest = emodb_folder(emodb, otherwise="use --corpus demo") / "manifest.csv"
        source, sizes, extra = str(manifest.resolve()), [2, 3, 4, 6, 8, 10, 12], {}
    else:
        source, sizes = "demo", [3, 5, 8, 12, 20, 30, 45]
        extra = {"demo_speakers": 4, "demo_scripts_per_emotion": 20}
    return grid_config_from_dict(
        {
            "name": f"Table 6 shape on {corpus}",
            "corpus": {"source": source, **extra},
            "split": {"strategies": ["speaker"], "seed": 0},
            "encoders": {"speech": ["egemaps+resemblyzer"], "text": ["kiwi-tfidf"]},
            "grid": {
                "modalities": ["both"],
                "per_label": sizes,
                "orders": ["shortest", "longest"],
                "seeds": [0, 1, 2],
            },
            "train": {"batch_size": 32, "epochs": 10},
            "output": {"dir": str(out), "tables": ["table6"]},
        }
    )


def per_cell_extraction(config, out: Path, n_cells: int) -> list[dict]:
    """Run ``n_cells`` cells the naive way: extract the cell's features into a fresh
    store, then train. Returns per-cell clip counts and seconds."""
    from emofuse.experiments.corpus import load_corpus
    from emofuse.experiments.plan import plan_cells
    from emofuse.experiments.samples import sample_cell_rows
    from emofuse.experiments.split_views import make_splits
    from emofuse.features import FeatureStore, extract_features
    from emofuse.head.train import TrainConfig, fit_head
    from emofuse.metrics import compute_metrics

    table, labels = load_corpus(config, out, progress=False)
    (view,) = make_splits(table, config)
    cells = plan_cells(config, {"speaker": [""]})
    picks = np.linspace(0, len(cells) - 1, n_cells).round().astype(int)
    codes = {label: i for i, label in enumerate(labels)}
    y = table["label"].map(codes).to_numpy()
    measured = []
    for i in picks:
        cell = cells[i]
        train, _ = sample_cell_rows(table, view, cell, config)
        rows = np.concatenate([train, view.rows("val"), view.rows("test")])
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            store = FeatureStore(tmp)
            encoders = extract_features(
                table.iloc[rows], store=store, speech=cell.speech_encoder,
                text=cell.text_encoder, fit_table=table.iloc[train], progress=False,
            )  # fmt: skip
            extract_s = time.perf_counter() - start

            def x(part, encoders=encoders, store=store):
                sub = table.iloc[part]
                return np.hstack([store.get(sub, encoders[m]) for m in ("speech", "text")])

            start = time.perf_counter()
            head = fit_head(
                x(train), y[train], x(view.rows("val")), y[view.rows("val")],
                n_classes=len(labels), config=TrainConfig(seed=cell.seed), progress=False,
            )  # fmt: skip
            metrics = compute_metrics(
                y[view.rows("test")], head.predict(x(view.rows("test"))), labels
            )
            train_s = time.perf_counter() - start
        measured.append(
            {"cell": f"N={cell.per_label_text} {cell.order} seed {cell.seed}", "clips": len(rows),
             "extract_s": extract_s, "train_s": train_s, "accuracy": metrics["accuracy"]}
        )  # fmt: skip
    total_clips = 0
    for cell in cells:
        train, _ = sample_cell_rows(table, view, cell, config)
        total_clips += len(train) + len(view.rows("val")) + len(view.rows("test"))
    for row in measured:
        row["total_clips"] = total_clips
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("emodb", "demo"), default="emodb")
    parser.add_argument("--emodb", type=Path, help="EmoDB folder (holding manifest.csv)")
    parser.add_argument("--extract-cells", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    if args.corpus == "emodb":
        emodb_folder(args.emodb, otherwise="use --corpus demo")

    from emofuse.experiments.runner import run_grid

    out = args.out or Path(tempfile.mkdtemp(prefix="grid_table6-"))
    shutil.rmtree(out, ignore_errors=True)
    config = grid_config(args.corpus, out, args.emodb)
    if args.corpus == "demo":  # the demo corpus is made outside the timings
        from emofuse.experiments.corpus import load_corpus

        load_corpus(config, out, progress=True)

    start = time.perf_counter()
    cold = run_grid(config, jobs=args.jobs, progress=False)
    cold_s = time.perf_counter() - start

    (out / "results.csv").unlink()
    (out / "report.md").unlink(missing_ok=True)
    start = time.perf_counter()
    warm = run_grid(config, jobs=args.jobs, progress=False)
    warm_s = time.perf_counter() - start
    assert warm.ran == warm.cells == 42, (warm.ran, warm.cells)

    naive = per_cell_extraction(dataclasses.replace(config), out, args.extract_cells)
    rate = sum(r["extract_s"] for r in naive) / sum(r["clips"] for r in naive)
    train_mean = float(warm.results["seconds"].mean())
    naive_total = rate * naive[0]["total_clips"] + train_mean * warm.cells

    print(
        f"\nTable 6 grid shape on {args.corpus}: {warm.cells} cells (7 sizes x 2 orders x 3 seeds), jobs={args.jobs}"
    )
    print("| run | seconds |")
    print("| :-- | --: |")
    print(f"| cold store: features once + 42 cells | {cold_s:.1f} |")
    print(f"|   of which feature extraction | {cold.seconds.get('features', 0):.1f} |")
    print(f"|   of which cells | {cold.seconds.get('cells', 0):.1f} |")
    print(f"| warm store: 42 cells end to end | {warm_s:.1f} |")
    print(
        f"|   of which cells (mean {train_mean:.3f} s a cell) | {warm.seconds.get('cells', 0):.1f} |"
    )
    print(f"| per-cell extraction, extrapolated to 42 cells | {naive_total:.1f} |")
    print()
    print("| naive cell (own store) | clips | extract s | train s |")
    print("| :-- | --: | --: | --: |")
    for r in naive:
        print(f"| {r['cell']} | {r['clips']} | {r['extract_s']:.1f} | {r['train_s']:.2f} |")
    print(
        f"\nextraction {rate * 1000:.0f} ms a clip; clips over all 42 cells "
        f"{naive[0]['total_clips']:,}; ratio per-cell-extraction / cached: "
        f"{naive_total / warm_s:.0f}x against the warm run, {naive_total / cold_s:.1f}x against "
        "the cold run"
    )
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
