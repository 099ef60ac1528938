"""`emofuse split` (assign train/val/test and print the leakage report) and
`emofuse leakage` (the report for any existing split file).

Assign every clip to train/val/test and print the leakage report."""

from __future__ import annotations

import argparse

from emofuse.cli import CommandError
from emofuse.cli.common import (
    add_command,
    add_output,
    add_seed,
    check_table_output,
    read_any_table,
    read_table,
)
from emofuse.cli.paths import check_output_paths

#: Same as emofuse.splits.SPLIT_STRATEGIES (a test checks), spelled out so that
#: `emofuse --help` does not import pandas.
STRATEGIES = ("corpus", "stratified", "speaker", "script", "speaker+script")
SPLIT_HELP = "add a train/val/test `part` column without leaking people or sentences"
LEAKAGE_HELP = "report the speakers and sentences an existing split shares between parts"


def register(subparsers: argparse._SubParsersAction) -> None:
    split = add_command(subparsers, "split", run_split, help=SPLIT_HELP, doc=__doc__)
    split.add_argument("corpus", help="corpus table from `emofuse prepare` (.parquet or .csv)")
    split.add_argument(
        "--strategy",
        required=True,
        choices=STRATEGIES,
        help="corpus: the corpus's own split; stratified: random by label; speaker / script / "
        "speaker+script: no person / sentence / either in two parts",
    )
    split.add_argument("--test-size", type=float, default=0.2, help="fraction of all clips (0.2)")
    split.add_argument(
        "--val-size", type=float, default=0.1, help="fraction of all clips, 0 = no val (0.1)"
    )
    add_seed(split)
    add_output(split, "split table (.parquet or .csv)")

    leakage = add_command(subparsers, "leakage", run_leakage, help=LEAKAGE_HELP, doc=None)
    leakage.add_argument("split", help="a table with a part column (.parquet or .csv)")
    leakage.add_argument("--part-column", default="part", help="column naming each row's part")


def run_split(args: argparse.Namespace) -> int:
    from emofuse.corpus.table import write_table
    from emofuse.splits import SplitError, assign_split, leakage_report

    check_table_output(args.output)
    check_output_paths([args.corpus], [args.output])
    table, labels = read_table(args.corpus)
    try:
        split = assign_split(
            table,
            args.strategy,
            test_size=args.test_size,
            val_size=args.val_size,
            seed=args.seed,
        )
    except SplitError as err:
        raise CommandError(f"{args.corpus}: {err}") from None
    for note in split.attrs.get("split_notes", []):
        print(f"note: {note}")
    print(leakage_report(split).to_text())
    path = write_table(split, args.output, labels)
    print(f"wrote {len(split)} clips to {path}")
    return 0


def run_leakage(args: argparse.Namespace) -> int:
    from emofuse.splits import SplitError, leakage_report

    table = read_any_table(args.split, "file")
    try:
        report = leakage_report(table, part_column=args.part_column)
    except SplitError as err:
        raise CommandError(f"{args.split}: {err}") from None
    print(report.to_text())
    return 0
