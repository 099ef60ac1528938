"""`emofuse split` (assign train/val/test and print the leakage report) and
`emofuse leakage` (the report for any existing split file)."""

from __future__ import annotations

import argparse

from emofuse.cli import CommandError

#: Same as emofuse.splits.SPLIT_STRATEGIES (a test checks), spelled out so that
#: `emofuse --help` does not import pandas.
STRATEGIES = ("corpus", "stratified", "speaker", "script", "speaker+script")


def register(subparsers: argparse._SubParsersAction) -> None:
    split = subparsers.add_parser(
        "split",
        help="add a train/val/test `part` column without leaking people or sentences",
        description="Assign every clip to train/val/test and print the leakage report.",
    )
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
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("-o", "--output", required=True, help="split table (.parquet or .csv)")
    split.set_defaults(handler=run_split)

    leakage = subparsers.add_parser(
        "leakage",
        help="report the speakers and sentences an existing split shares between parts",
    )
    leakage.add_argument("split", help="a table with a part column (.parquet or .csv)")
    leakage.add_argument("--part-column", default="part", help="column naming each row's part")
    leakage.set_defaults(handler=run_leakage)


def run_split(args: argparse.Namespace) -> int:
    from emofuse.corpus.table import CorpusTableError, read_table, write_table
    from emofuse.splits import SplitError, assign_split, leakage_report

    try:
        table, labels = read_table(args.corpus)
        split = assign_split(
            table,
            args.strategy,
            test_size=args.test_size,
            val_size=args.val_size,
            seed=args.seed,
        )
    except (FileNotFoundError, CorpusTableError) as err:
        raise CommandError(str(err)) from None
    except SplitError as err:
        raise CommandError(f"{args.corpus}: {err}") from None
    for note in split.attrs.get("split_notes", []):
        print(f"note: {note}")
    print(leakage_report(split).to_text())
    path = write_table(split, args.output, labels)
    print(f"wrote {len(split)} clips to {path}")
    return 0


def run_leakage(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from emofuse.splits import SplitError, leakage_report

    path = Path(args.split)
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    try:
        if path.suffix == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            table = pd.read_parquet(path)
    except Exception as err:  # a clear one-liner beats a parser's traceback
        raise CommandError(f"{path}: cannot read as {path.suffix or 'parquet'}: {err}") from None
    try:
        report = leakage_report(table, part_column=args.part_column)
    except SplitError as err:
        raise CommandError(f"{path}: {err}") from None
    print(report.to_text())
    return 0
