"""`emofuse sample`: N clips per emotion, random / shortest-first / longest-first.

The paper's sampling recipe; prints count and duration per label. On a split table
(one with a `part` column, from `emofuse split`) only the train part is sampled; the
val and test rows pass through unchanged, as in the experiment grids."""

from __future__ import annotations

import argparse

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_output, add_seed, read_table
from emofuse.cli.paths import check_output_paths

HELP = "take N clips per emotion (random, shortest-first or longest-first)"
#: --by: what shortest/longest measures, and the table column it reads.
SORT_KEYS = {"auto": None, "duration": "duration_s", "text": "text_length"}
BY_HELP = (
    "what shortest/longest measures: audio duration or text length; auto (default): "
    "duration, or text length for a table without durations (a text-only corpus)"
)


def _per_label(value: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', not {value!r}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "sample", run, help=HELP, doc=__doc__)
    parser.add_argument("corpus", help="corpus or split table (.parquet or .csv)")
    parser.add_argument(
        "--per-label", type=_per_label, required=True, help="clips per label, or 'all'"
    )
    parser.add_argument("--order", choices=("random", "shortest", "longest"), default="random")
    parser.add_argument("--by", choices=tuple(SORT_KEYS), default="auto", help=BY_HELP)
    parser.add_argument(
        "--dedupe-text", action="store_true", help="keep one clip per normalised sentence first"
    )
    add_seed(parser)
    add_output(parser, "sampled table (.parquet or .csv)")


def run(args: argparse.Namespace) -> int:
    import warnings

    from emofuse.corpus.table import write_table
    from emofuse.sampling import SamplingShortfallWarning, sample_train_part, sampling_summary

    check_output_paths([args.corpus], [args.output])
    table, labels = read_table(args.corpus)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingShortfallWarning)
        try:
            sampled = sample_train_part(
                table,
                args.per_label,
                order=args.order,
                by=SORT_KEYS[args.by],
                dedupe_text=args.dedupe_text,
                seed=args.seed,
            )
        except ValueError as err:
            raise CommandError(f"{args.corpus}: {err}") from None
    for warning in caught:
        print(f"warning: {warning.message}")
    if args.dedupe_text:
        print(
            f"de-duplicated text: {sampled.attrs['rows_before_dedupe']} -> "
            f"{sampled.attrs['rows_after_dedupe']} clips (one per normalised sentence)"
        )
    train = sampled
    if "part" in sampled.columns:
        train = sampled[sampled["part"].astype(str) == "train"]
        print(
            f"split table: sampled the train part; {len(sampled) - len(train)} clips of the "
            "other parts passed through unchanged"
        )
    print(sampling_summary(train).to_string(float_format=lambda x: f"{x:.2f}"))
    hours = train["duration_s"].sum() / 3600
    print(f"total: {len(train)} clips, {hours:.2f} h")
    path = write_table(sampled, args.output, labels)
    print(f"wrote {path}")
    return 0
