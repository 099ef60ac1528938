"""`emofuse evaluate`: a bundle scored on a labelled table (UAR, accuracy, macro-F1,
confusion matrix), with features from the bundle's own encoders."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_no_progress, load_bundle, print_metrics, read_table
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse import audio_checks

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a bundle on a labelled corpus table (UAR, accuracy, macro-F1, confusion)",
        description=(
            "Features come from the bundle's own encoders (fitted state included). Clips "
            f"longer than {audio_checks.MAX_CLIP_S:g} s (the one length limit of every command, "
            "emofuse.audio_checks.MAX_CLIP_S) are refused from their header before decoding "
            "and dropped, each named with its reason (dropped.csv with -o); for a long "
            "recording use `emofuse timeline`."
        ),
    )
    evaluate.add_argument("bundle", type=Path, metavar="BUNDLE")
    evaluate.add_argument(
        "corpus", type=Path, metavar="CORPUS", help="labelled table (`emofuse prepare` / `split`)"
    )
    evaluate.add_argument(
        "-o", "--output", type=Path, metavar="DIR",
        help="write metrics.json, confusion.csv/.png, per_class.csv, predictions.csv",
    )  # fmt: skip
    evaluate.add_argument("--part", metavar="PART", help="only rows with this `part` (e.g. test)")
    evaluate.add_argument(
        "--store", type=Path, metavar="DIR",
        help="feature store to reuse (default: a temporary one)",
    )  # fmt: skip
    add_plugin_option(evaluate)
    add_no_progress(evaluate)
    evaluate.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from emofuse.bundle import BundleError
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import EVALUATION_FILES, PipelineError, evaluate_bundle

    outputs = [args.output / name for name in EVALUATION_FILES] if args.output else []
    check_output_paths([args.bundle, args.corpus], outputs)
    load_plugins(args.plugin)
    bundle = load_bundle(args.bundle)
    table, _ = read_table(args.corpus)
    if args.part:
        if "part" not in table.columns:
            raise CommandError(f"{args.corpus}: no `part` column to select --part {args.part} from")
        table = table[table["part"].astype(str) == args.part]
        if table.empty:
            raise CommandError(f"{args.corpus}: no rows with part == {args.part!r}")

    with tempfile.TemporaryDirectory(prefix="emofuse-eval-") as scratch:
        try:
            result = evaluate_bundle(
                bundle, table, store=args.store or Path(scratch), out_dir=args.output,
                progress=not args.no_progress,
            )  # fmt: skip
        except (BundleError, PipelineError, FeatureStoreError) as err:
            raise CommandError(str(err)) from None
    print(bundle.describe())
    print_metrics(result.metrics)
    if result.out_dir is not None:
        print(f"metrics written to {result.out_dir}")
    return 0
