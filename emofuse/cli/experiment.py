"""`emofuse experiment CONFIG`: run a grid of cells from a TOML config (resumable).

Run every cell of a grid config: features are extracted once per encoder, each cell
trains a head on cached features and appends a row to results.csv; finished cells are
skipped on a rerun. Writes tables/*.md, plots/*.png and report.md. Example configs:
configs/demo.toml, configs/paper/*.toml (give their corpus with --corpus)."""

from __future__ import annotations

import argparse
import time

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_no_progress, add_output
from emofuse.cli.plugins import add_plugin_option, load_plugins

HELP = "run an experiment grid from a TOML config (paper tables, split sweeps, CV)"
CORPUS_HELP = (
    "the corpus (a table from `emofuse prepare`, a corpus folder or a manifest; overrides "
    "corpus.source, which the shipped configs for real corpora leave empty)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "experiment", run, help=HELP, doc=__doc__)
    parser.add_argument("config", help="grid config (TOML)")
    add_output(parser, "output folder (overrides output.dir)", default=None, metavar="DIR")
    parser.add_argument("--corpus", metavar="PATH", help=CORPUS_HELP)
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        metavar="N",
        help="cells trained in parallel (overrides output.jobs)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show the grid and what is left to run; run nothing"
    )
    add_no_progress(parser)
    add_plugin_option(parser)


def _load(args: argparse.Namespace):
    import dataclasses

    from emofuse.experiments.config import GridConfigError, load_grid_config

    try:
        config = load_grid_config(args.config, corpus=args.corpus)
    except GridConfigError as err:
        raise CommandError(str(err)) from None
    output = config.output
    if args.output:
        output = dataclasses.replace(output, dir=args.output)
    if args.jobs is not None:
        if args.jobs < 1:
            raise CommandError("--jobs: must be at least 1")
        output = dataclasses.replace(output, jobs=args.jobs)
    return dataclasses.replace(config, output=output)


def run(args: argparse.Namespace) -> int:

    config = _load(args)
    load_plugins(args.plugin)
    if args.dry_run:
        return _dry_run(config)

    from emofuse.experiments.config import GridRunError
    from emofuse.experiments.report import strategy_names
    from emofuse.experiments.runner import run_grid
    from emofuse.experiments.tables import summary_table

    _check_inputs_kept(args, config)
    start = time.perf_counter()
    try:
        run = run_grid(config, progress=not args.no_progress)
    except GridRunError as err:
        raise CommandError(f"{args.config}: {err}") from None
    seconds = time.perf_counter() - start
    if len(run.results):
        print(summary_table(run.results, names=strategy_names(config)))
        print()
    notes = list(dict.fromkeys(run.notes))
    for note in notes[:5]:
        print(f"note: {note}")
    if len(notes) > 5:
        print(f"note: ... and {len(notes) - 5} more")
    print(
        f"{config.name}: {run.cells} cells, {run.ran} run now, {run.skipped} already done, "
        f"{len(run.failed)} failed; {seconds:.1f} s "
        + "("
        + ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items())
        + ")"
    )
    print(f"results: {run.output_dir / 'results.csv'}")
    if run.report:
        print(f"report:  {run.report}")
    if run.failed:
        for cell_id, error in run.failed[:10]:
            print(f"failed cell {cell_id}: {error}")
        raise CommandError(f"{len(run.failed)} cells failed (rerun to retry them)")
    return 0


def _check_inputs_kept(args: argparse.Namespace, config) -> None:
    """The grid's own files in its folder are never its config or its corpus."""
    from emofuse.cli.paths import check_output_paths
    from emofuse.experiments.corpus import CORPUS_DIGEST_FILE
    from emofuse.experiments.report import REPORT_FILE
    from emofuse.experiments.results import RESULTS_FILE

    source = config.corpus.source
    inputs = [args.config, config.resolve(source) if source and source != "demo" else None]
    written = [config.output_dir / name for name in (RESULTS_FILE, REPORT_FILE, CORPUS_DIGEST_FILE)]
    check_output_paths(inputs, written, writable=False)


def _dry_run(config) -> int:
    from emofuse.experiments.config import GridRunError
    from emofuse.experiments.corpus import load_corpus
    from emofuse.experiments.plan import plan_cells
    from emofuse.experiments.results import RESULTS_FILE, ResultsFile
    from emofuse.experiments.split_views import fold_names

    out = config.output_dir
    problem = ""
    try:
        loaded = load_corpus(config, out, progress=False, create=False)
    except GridRunError as err:
        loaded, problem = None, str(err)
    table = loaded[0] if loaded else None
    folds = fold_names(config, table)
    cells = plan_cells(config, folds)
    done = ResultsFile(out / RESULTS_FILE).finished() if (out / RESULTS_FILE).exists() else set()
    left = sum(cell.cell_id(config) not in done for cell in cells)
    print(f"grid {config.name!r} -> {out}")
    if table is not None:
        print(f"corpus: {len(table)} clips, {table['label'].nunique()} labels")
    elif problem:
        print(f"corpus: cannot be read yet ({problem}); a run would stop here")
    else:
        print("corpus: the demo corpus (made on the first run)")
    for strategy, names in folds.items():
        detail = f"{len(names)} folds" if names != [""] else "one split"
        if not names:
            detail = f"one fold per {config.split.group} (known once the corpus is read)"
        print(f"split {strategy}: {detail}")
    g = config.grid
    print(
        f"modalities {list(g.modalities)}, speech {list(config.encoders.speech)}, "
        f"text {list(config.encoders.text)}, per_label "
        f"{['all' if n is None else n for n in g.per_label]}, orders {list(g.orders)}, "
        f"seeds {list(g.seeds)}"
    )
    print(f"{len(cells)} cells, {len(cells) - left} done, {left} to run")
    return 0
