"""`emofuse suggest`: which clips of an unlabelled pool to label next.

POOL is a manifest (CSV, TSV, JSONL or Parquet; the columns `prepare` reads, with `label`
absent or blank). The bundle scores every clip with vectors from the feature store
(--store: computed once, resumed after a kill), and the strategy ranks the clips not yet
labelled: `hybrid` (default, the best in bench/active_learning.py: the predicted emotions
take turns, the one with the fewest labels first, each giving one of its most uncertain
clips, from the speaker with the fewest labels), `uncertainty` (the smallest margin
between the two most probable emotions), `diverse` (k-center over the standardised
vectors, far from the clips already labelled) or `random`. Clips with a label in the pool,
with an answer in --exclude answers.csv, or that the bundle was trained on are never
suggested. The output keeps the pool's columns and adds rank, predicted, p_predicted,
second, p_second, margin and reason; it is written whole or not at all."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_no_progress, add_output, add_seed, load_bundle
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins

HELP = "rank the clips of an unlabelled pool: which to label next"


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of clips, not {value!r}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse.active.strategies import DEFAULT_STRATEGY, STRATEGIES

    parser = add_command(subparsers, "suggest", run, help=HELP, doc=__doc__)
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="a model from `emofuse train`")
    parser.add_argument("pool", type=Path, metavar="POOL", help="the unlabelled pool (manifest)")
    parser.add_argument("-n", type=_count, required=True, metavar="N", help="clips to suggest")
    add_output(parser, "where to write them (.csv, .tsv or .parquet)", type=Path, metavar="FILE")
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
        help=f"how to rank the clips (default: {DEFAULT_STRATEGY})",
    )  # fmt: skip
    parser.add_argument(
        "--exclude", type=Path, metavar="ANSWERS",
        help="answers.csv from `emofuse label`: clips answered there are not suggested "
        "(a file not written yet leaves nothing out)",
    )  # fmt: skip
    parser.add_argument(
        "--store", type=Path, required=True, metavar="DIR",
        help="feature store to read and fill with the bundle's encoders",
    )  # fmt: skip
    parser.add_argument(
        "--speaker-column", metavar="NAME", default=None,
        help="the pool's column naming each clip's speaker (default: the one `prepare` "
        "reads as speaker); a bundle that adapts to speakers uses it, and hybrid spreads "
        "its picks over speakers",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="clips per encoder call (default 8)"
    )
    add_seed(parser, "seed for the random order ties fall back on")
    add_plugin_option(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from emofuse.active.pool_scores import PoolScoringError
    from emofuse.active.suggest import suggest, write_suggestions
    from emofuse.bundle import BundleError
    from emofuse.outputs import TableFormatError, partial_path, table_format

    load_plugins(args.plugin)
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {args.batch_size}")
    try:
        table_format(args.output)
    except TableFormatError as err:
        raise CommandError(f"-o {err}") from None
    if not args.pool.exists():
        raise CommandError(f"{args.pool}: no such pool manifest")
    if args.exclude is not None and args.exclude.exists() and not args.exclude.is_file():
        raise CommandError(f"--exclude {args.exclude}: not a file (an answers.csv)")
    check_output_paths(
        [args.pool, args.bundle, args.exclude, args.store],
        [args.output, partial_path(args.output)],
    )
    bundle = load_bundle(args.bundle)
    pool = _read_pool(args.pool)
    excluded, answers = _answers(args.exclude, pool)
    try:
        found = suggest(
            bundle, pool, args.n, store=args.store, strategy=args.strategy,
            exclude=excluded, answers=answers, speaker_column=args.speaker_column,
            seed=args.seed, progress=not args.no_progress, batch_size=args.batch_size,
        )  # fmt: skip
    except (PoolScoringError, BundleError, ValueError) as err:
        raise CommandError(str(err)) from None
    write_suggestions(found, args.output)
    for note in found.notes:
        print(f"note: {note}", file=sys.stderr)
    if len(found.dropped):
        reasons = found.dropped["reason"].str.split(":").str[0].value_counts()
        print(
            f"{len(found.dropped)} clips could not be scored: "
            + "; ".join(f"{reason} ({count})" for reason, count in reasons.items()),
            file=sys.stderr,
        )
    print(
        f"{len(found.table)} clips suggested by {found.strategy} from {found.candidates} "
        f"not yet labelled ({found.labelled} labelled or answered) -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _read_pool(path: Path):
    from emofuse.corpus.pool import read_pool

    try:
        pool = read_pool(path)
    except (ValueError, UnicodeDecodeError) as err:  # CorpusError: a file it cannot read
        raise CommandError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    if len(pool.problems):
        reasons = pool.problems["reason"].str.split(":").str[0].value_counts()
        print(
            f"note: {len(pool.problems)} rows of {path} left out: "
            + "; ".join(f"{reason} ({count})" for reason, count in reasons.items()),
            file=sys.stderr,
        )
    if not len(pool.table):
        raise CommandError(f"{path}: no clip to suggest from (every row was left out)")
    return pool


def _answers(path: Path | None, pool) -> tuple[set[str], dict[str, str]]:
    """Ids with a standing answer, and the agreed label of each; ids the pool does not
    hold are counted in one note (answers of another pool, or rows since removed)."""
    if path is None:
        return set(), {}
    if not path.exists():  # the loop's first round: nothing answered yet
        print(f"note: {path} does not exist yet: no answered clip to leave out", file=sys.stderr)
        return set(), {}
    from emofuse.corpus.answers import answered_ids, resolve_answers

    try:
        ids, labels = answered_ids(path), resolve_answers(path).labels
    except (ValueError, UnicodeDecodeError) as err:
        raise CommandError(f"--exclude {err}") from None
    stray = ids - set(pool.table["id"].astype(str))
    if stray:
        print(
            f"note: {len(stray)} answered ids of {path} are not in {pool.source} "
            f"(e.g. {sorted(stray)[0]!r}): nothing to leave out for them",
            file=sys.stderr,
        )
    return ids, labels
