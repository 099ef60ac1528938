"""`emofuse sample`: N clips per emotion, random / shortest-first / longest-first."""

from __future__ import annotations

import argparse

from emofuse.cli import CommandError


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
    parser = subparsers.add_parser(
        "sample",
        help="take N clips per emotion (random, shortest-first or longest-first)",
        description="The paper's sampling recipe; prints count and duration per label.",
    )
    parser.add_argument("corpus", help="corpus or split table (.parquet or .csv)")
    parser.add_argument(
        "--per-label", type=_per_label, required=True, help="clips per label, or 'all'"
    )
    parser.add_argument("--order", choices=("random", "shortest", "longest"), default="random")
    parser.add_argument(
        "--by",
        choices=("duration", "text"),
        default="duration",
        help="what shortest/longest measures: audio duration or text length (text-only)",
    )
    parser.add_argument(
        "--dedupe-text", action="store_true", help="keep one clip per normalised sentence first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="sampled table (.parquet or .csv)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from emofuse.corpus.table import CorpusTableError, read_table, write_table
    from emofuse.sampling import SamplingShortfallWarning, sample_per_label, sampling_summary

    try:
        table, labels = read_table(args.corpus)
    except (FileNotFoundError, CorpusTableError) as err:
        raise CommandError(str(err)) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingShortfallWarning)
        try:
            sampled = sample_per_label(
                table,
                args.per_label,
                order=args.order,
                by={"duration": "duration_s", "text": "text_length"}[args.by],
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
    summary = sampling_summary(sampled)
    print(summary.to_string(float_format=lambda x: f"{x:.2f}"))
    hours = sampled["duration_s"].sum() / 3600
    print(f"total: {len(sampled)} clips, {hours:.2f} h")
    path = write_table(sampled, args.output, labels)
    print(f"wrote {path}")
    return 0
