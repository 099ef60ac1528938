"""`emofuse prepare SOURCE -o corpus.parquet`: scan a corpus once into the utterance
table (plus a problems report) that every later step reads.

Scan a corpus (AI-Hub dataset 466 folder, flat WAV+JSON folder, or a CSV/TSV/JSONL
manifest) into the utterance table. Bad files never stop the scan: they are listed in
the problems report."""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli.common import add_command, add_no_progress, add_output
from emofuse.cli.paths import check_output_paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "prepare", run, doc=__doc__, help="scan a corpus into the utterance table"
    )
    parser.add_argument("source", help="corpus folder or manifest file")
    add_output(parser, "table to write (.parquet, or .csv)")
    parser.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "aihub466", "flat", "manifest"),
        help="corpus layout (default: guessed from SOURCE)",
    )
    parser.add_argument(
        "--problems",
        help="problems report CSV (default: <output stem>.problems.csv beside the output)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when any file had a problem"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes reading files (default: all CPUs)"
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="SET",
        help="hold the corpus to a label set: 'korean' (the seven emotions, Korean names as "
        "aliases) or a comma list; other labels become unknown-label problems "
        "(default: keep the corpus's own labels)",
    )
    add_no_progress(parser, "--quiet")


def run(args: argparse.Namespace) -> int:
    from emofuse.cli import CommandError
    from emofuse.corpus import CorpusError, read_corpus, write_table

    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    output = Path(args.output)
    default_problems = output.with_name(f"{output.stem}.problems.csv")
    problems_path = Path(args.problems) if args.problems else default_problems
    check_output_paths([args.source], [output, problems_path])
    try:
        result = read_corpus(
            args.source,
            layout=args.layout,
            workers=args.workers,
            progress=not args.no_progress,
            labels=args.labels,
        )
    except (CorpusError, FileNotFoundError, NotADirectoryError) as err:
        raise CommandError(str(err)) from err

    if len(result.problems):
        problems_path.parent.mkdir(parents=True, exist_ok=True)
        result.problems.to_csv(problems_path, index=False)
    elif not args.problems and default_problems.exists():
        default_problems.unlink()  # a stale report from an earlier scan would mislead
    print(result.summary())
    if len(result.problems):
        print(f"problems report: {problems_path}")
    if not len(result.table):
        raise CommandError(f"{args.source}: no usable clips; nothing written to {output}")
    write_table(result.table, output, result.labels)
    print(f"wrote {output}")
    if args.strict and len(result.problems):
        print(f"--strict: {len(result.problems)} problems", flush=True)
        return 1
    return 0
