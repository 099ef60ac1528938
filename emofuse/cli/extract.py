"""`emofuse extract CORPUS --speech SPEC --text SPEC --store DIR`: fill the feature store.

Resumable: run it again after a kill and only the missing vectors are computed. Several
processes: `accelerate launch --multi_gpu --num_processes 2 -m emofuse extract ...` (each
rank encodes its share and writes its own shards; rank 0 prints the report; on a machine
without CUDA the ranks use CPU and gloo, while `--cpu` alone would start one process). Encoders from a plug-in
module register themselves when imported with `--plugin MODULE` or `EMOFUSE_PLUGINS=a,b`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.plugins import add_plugin_option, load_plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="compute and store speech/text vectors for a corpus table (resumable)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("corpus", type=Path, help="table from `emofuse prepare` or `emofuse split`")
    parser.add_argument(
        "--speech", metavar="SPEC", help="speech encoder spec, e.g. egemaps+resemblyzer"
    )
    parser.add_argument("--text", metavar="SPEC", help="text encoder spec, e.g. kiwi-tfidf")
    parser.add_argument(
        "--store", type=Path, required=True, metavar="DIR", help="feature store directory"
    )
    parser.add_argument(
        "--split",
        type=Path,
        metavar="SPLIT_FILE",
        help="table with `id` and `part` columns (when CORPUS itself has no `part` column)",
    )
    parser.add_argument(
        "--fit-part",
        default="train",
        metavar="PART",
        help="fit text encoders that need it (kiwi-tfidf) on rows of this part (default: train)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="items per encode() call (default 8)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=512, help="vectors per shard file (default 512)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes encoding batches in parallel, for CPU-bound encoders such as egemaps",
    )
    parser.add_argument(
        "--float16", action="store_true", help="store vectors as float16 (half the disk)"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="try items that failed before again"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plugin_option(parser)
    parser.set_defaults(handler=run)


def _read_inputs(args: argparse.Namespace):
    from emofuse.corpus.table import CorpusTableError, read_table

    try:
        table, _labels = read_table(args.corpus)
    except (FileNotFoundError, CorpusTableError) as error:
        raise CommandError(str(error)) from error
    if args.split is not None:
        split = _read_split(args.split)
        if "part" in table.columns:
            table = table.drop(columns=["part"])
        table = table.merge(split, on="id", how="left")
        table["part"] = table["part"].fillna("")
        if not (table["part"] != "").any():
            raise CommandError(f"{args.split}: no id matches the corpus {args.corpus}")
    fit_table = None
    if "part" in table.columns:
        fit_table = table[table["part"].astype(str) == args.fit_part]
    return table, fit_table


def _read_split(path: Path):
    import pandas as pd

    if not path.exists():
        raise CommandError(f"{path}: no such split file (make one with `emofuse split`)")
    try:
        if path.suffix == ".csv":
            split = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            split = pd.read_parquet(path)
    except Exception as error:
        raise CommandError(f"{path}: unreadable split file ({error})") from error
    missing = [c for c in ("id", "part") if c not in split.columns]
    if missing:
        raise CommandError(f"{path}: no column(s) {missing}; a split file has `id` and `part`")
    split = split[["id", "part"]].astype(str)
    if split["id"].duplicated().any():
        raise CommandError(f"{path}: an id appears twice in the split file")
    return split


def run(args: argparse.Namespace) -> int:
    if not args.speech and not args.text:
        raise CommandError("give --speech SPEC, --text SPEC or both")
    if min(args.batch_size, args.shard_size, args.workers) < 1:
        raise CommandError("--batch-size, --shard-size and --workers must be at least 1")
    load_plugins(args.plugin)

    from emofuse.encoders.base import EncoderError
    from emofuse.features import (
        ExtractReport,
        FeatureStore,
        FeatureStoreError,
        current_ranks,
        extract_features,
    )

    table, fit_table = _read_inputs(args)
    if fit_table is not None and not len(fit_table):
        fit_table = None
    ranks = current_ranks()
    reports: list[ExtractReport] = []
    try:
        encoders = extract_features(
            table,
            store=FeatureStore(args.store, float16=args.float16),
            speech=args.speech,
            text=args.text,
            fit_table=fit_table,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            progress=not args.no_progress,
            workers=args.workers,
            retry_failed=args.retry_failed,
            reports=reports,
        )
    except (FeatureStoreError, EncoderError) as error:
        hint = ""
        if "must be fitted" in str(error) and fit_table is None:
            hint = (
                f" (CORPUS has no rows with part == {args.fit_part!r}: pass --split "
                "SPLIT_FILE or a table with a `part` column)"
            )
        raise CommandError(f"{error}{hint}") from error
    if ranks.is_main:
        world = f" on {ranks.world} processes" if ranks.world > 1 else ""
        print(f"{len(table)} utterances from {args.corpus} -> {args.store}{world}")
        for report in reports:
            print(report.to_text())
        for modality, encoder in encoders.items():
            print(
                f"{modality} encoder: {encoder.spec} dim={encoder.dim} fingerprint={encoder.fingerprint()}"
            )
    return 0
