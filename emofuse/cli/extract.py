"""`emofuse extract CORPUS --speech SPEC --text SPEC --store DIR`: fill the feature store.

Resumable: run it again after a kill and only the missing vectors are computed. Several
processes: `accelerate launch --multi_gpu --num_processes 2 -m emofuse extract ...` (each
rank encodes its share and writes its own shards; rank 0 prints the report; on a machine
without CUDA the ranks use CPU and gloo, while `--cpu` alone would start one process).
Hugging Face models: batches of at most --batch-seconds of padded audio, prepared by
--loader-workers processes beside the model; on CUDA under bfloat16 autocast unless the
spec says `autocast=off` (float32 and bfloat16 vectors are stored apart).
Encoders from a plug-in module register themselves when imported with `--plugin MODULE`
or `EMOFUSE_PLUGINS=a,b`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_no_progress, read_any_table, read_table
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "extract",
        run,
        help="compute and store speech/text vectors for a corpus table (resumable)",
        doc=__doc__,
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
        help="fit text encoders that need it (kiwi-sparse, kiwi-tfidf) on rows of this part "
        "(default: train); kiwi-sparse also reads their labels",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="the most items per batch (default: 64 for Hugging Face models, where for speech "
        "--batch-seconds usually binds first; 8 for the others)",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        metavar="S",
        help="speech: the most seconds of padded audio per batch (clips x the longest; "
        "default 120 for Hugging Face models, no limit for the others; ignored for text, "
        "with a note)",
    )
    for flag, default, what in (
        ("--shard-size", 512, "vectors per shard file"),
        ("--workers", 1, "processes encoding batches in parallel (CPU-bound encoders: egemaps)"),
    ):
        parser.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    parser.add_argument(
        "--loader-workers",
        type=int,
        metavar="N",
        help="Hugging Face models: processes that read, decode and pad (or tokenise) batches "
        "beside the model (default: up to 4 with CUDA, none on a CPU: one thread reads ahead); "
        "ignored, with a note, for other encoders and with --workers above 1",
    )
    parser.add_argument(
        "--float16", action="store_true", help="store vectors as float16 (half the disk)"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="try items that failed before again"
    )
    add_no_progress(parser)
    add_plugin_option(parser)


def _read_inputs(args: argparse.Namespace):
    from emofuse.corpus.table import CorpusTableError, attach_parts

    table, _labels = read_table(args.corpus)
    if args.split is None:
        return table
    split = read_any_table(args.split, "split file", "make one with `emofuse split`")
    try:
        return attach_parts(table, split, source=str(args.split))
    except CorpusTableError as error:
        raise CommandError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    if not args.speech and not args.text:
        raise CommandError("give --speech SPEC, --text SPEC or both")
    batch_size = 1 if args.batch_size is None else args.batch_size
    if min(batch_size, args.shard_size, args.workers) < 1:
        raise CommandError("--batch-size, --shard-size and --workers must be at least 1")
    if args.batch_seconds is not None and not args.batch_seconds > 0:
        raise CommandError(f"--batch-seconds must be > 0, got {args.batch_seconds:g}")
    if args.loader_workers is not None and args.loader_workers < 0:
        raise CommandError(f"--loader-workers must be 0 or more, got {args.loader_workers}")
    check_output_paths([args.corpus, args.split], [args.store], writable=False)
    load_plugins(args.plugin)

    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStore, FeatureStoreError, current_ranks, extract_features
    from emofuse.features.extract import fit_rows

    table = _read_inputs(args)
    if args.speech:  # a text-only corpus: one line, not a failure per row
        from emofuse.corpus.text_only import NoAudioError, require_audio

        try:
            require_audio(table, "speech", source=str(args.corpus), asked="--speech",
                          instead="--text SPEC only")  # fmt: skip
        except NoAudioError as error:
            raise CommandError(str(error)) from None
    fit_table = fit_rows(table, args.fit_part)
    reports: list = []
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
            batch_seconds=args.batch_seconds,
            loader_workers=args.loader_workers,
        )
    except (FeatureStoreError, EncoderError) as error:
        hint = ""
        if "must be fitted" in str(error) and fit_table is None:
            hint = (
                f" (CORPUS has no rows with part == {args.fit_part!r}: pass --split "
                "SPLIT_FILE or a table with a `part` column)"
            )
        raise CommandError(f"{error}{hint}") from error
    ranks = current_ranks()
    if ranks.is_main:
        world = f" on {ranks.world} processes" if ranks.world > 1 else ""
        print(f"{len(table)} utterances from {args.corpus} -> {args.store}{world}")
        for report in reports:
            print(report.to_text())
        for modality, encoder in encoders.items():
            print(
                f"{modality} encoder: {encoder.spec} dim={encoder.dim} "
                f"fingerprint={encoder.fingerprint()}"
            )
    return 0
