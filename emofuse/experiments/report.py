"""A grid's reports: paper-shaped Markdown tables in ``<output>/tables``, learning
curves in ``<output>/plots`` and ``report.md`` that links them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emofuse.experiments.config import GridConfig
from emofuse.experiments.grid_run import GridRun
from emofuse.experiments.results import CELLS_DIR, RESULTS_FILE
from emofuse.experiments.split_views import SPLITS_DIR

REPORT_FILE = "report.md"


def reuse_report(run: GridRun, results_path: Path) -> bool:
    """Point ``run`` at the outputs already on disk when report.md is newer than
    results.csv (nothing changed since it was written); False when it must be rewritten."""
    out = run.output_dir
    report = out / REPORT_FILE
    if not report.exists() or report.stat().st_mtime < results_path.stat().st_mtime:
        return False
    run.report = report
    run.tables = sorted((out / "tables").glob("*.md"))
    run.plots = sorted((out / "plots").glob("*.png"))
    return True


def table_names(config: GridConfig, results: pd.DataFrame) -> list[str]:
    from emofuse.experiments.tables import tables_for

    names: list[str] = []
    for name in config.output.tables:
        names += tables_for(results) if name == "auto" else [name]
    return list(dict.fromkeys(names))


def strategy_names(config: GridConfig) -> dict[str, str]:
    """Table names for the CV strategies, with this grid's group column and k."""
    group = config.split.group
    return {"logo": f"leave-one-{group}-out", "kfold": f"{config.split.k}-fold by {group}"}


def write_outputs(run: GridRun, config: GridConfig, *, n_classes: int) -> None:
    """Tables in ``<output>/tables``, curves in ``<output>/plots`` and ``report.md``."""
    from emofuse.experiments.plots import plot_learning_curves
    from emofuse.experiments.tables import build_table

    out = run.output_dir
    documents = []
    for name in table_names(config, run.results):
        text = build_table(run.results, name, names=strategy_names(config))
        if not text:
            continue
        path = out / "tables" / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        run.tables.append(path)
        documents.append(text)
    run.plots = plot_learning_curves(
        run.results, out / "plots", n_classes=n_classes, title=config.name,
        names=strategy_names(config),
    )  # fmt: skip
    lines = [
        f"# {config.name}",
        "",
        f"{len(run.results)} runs in `{RESULTS_FILE}` "
        f"({run.results['cell_id'].nunique()} cells); per-cell training ids under "
        f"`{CELLS_DIR}/<cell_id>/train_ids.txt`, splits under `{SPLITS_DIR}/`.",
        "",
        "Tables: " + ", ".join(f"[{p.stem}]({p.relative_to(out)})" for p in run.tables),
        "",
    ]
    for path in run.plots:
        lines += [f"![{path.stem}]({path.relative_to(out)})", ""]
    lines += [doc.replace("\n## ", "\n### ").replace("## ", "### ", 1) for doc in documents]
    run.report = out / REPORT_FILE
    run.report.write_text("\n".join(lines) + "\n", encoding="utf-8")
