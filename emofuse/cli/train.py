"""`emofuse train`: a split table to a model bundle (the head on stored features, or with
``--finetune`` the Hugging Face encoders trained end to end with it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_no_progress, add_verbose, print_metrics, read_table
from emofuse.cli.config_flags import add_config_flags, config_from_args, flag_name, given_fields
from emofuse.cli.plugins import add_plugin_option, load_plugins
from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT  # light: no torch
from emofuse.modalities import BOTH, MODALITIES, SPEECH, TEXT


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse.finetune.config import FinetuneConfig
    from emofuse.head.config import TrainConfig

    train = subparsers.add_parser(
        "train",
        help="train a speech / text / fused model on a split table and save a bundle",
        description=(
            "Train on rows with part == train, score part == test, and write a bundle "
            "directory (config.json, model.safetensors, encoder state, evaluation/ with "
            "metrics and the confusion matrix). Features come from the feature store "
            "(--store): computed once, reused. What part == val is for depends on --recipe: "
            "small-data (the default) trains at least --min-steps steps, keeps the last epoch "
            "(--patience N: the best val epoch), blends in a logistic regression, then trains "
            "again on train + val (--refit) and saves that model; paper runs --epochs passes "
            "and keeps the epoch with the best val UAR. small-data also picks its head by "
            "cross-validation on train + val (--select) and, with --speaker-norm auto (its "
            "default), normalises each speaker's speech vectors when that helps. With "
            "--finetune the encoders are trained too, no store is used, the epoch with the "
            "best val UAR is kept, and speaker normalisation is off."
        ),
    )
    train.add_argument(
        "split", type=Path, metavar="SPLIT", help="table with a `part` column (`emofuse split`)"
    )
    train.add_argument(
        "--modality",
        choices=MODALITIES,
        default=BOTH,
        help="inputs the model reads (default: both)",
    )
    train.add_argument(
        "--speech", metavar="SPEC", help=f"speech encoder (default: {OFFLINE_SPEECH})"
    )
    train.add_argument("--text", metavar="SPEC", help=f"text encoder (default: {OFFLINE_TEXT})")
    train.add_argument(
        "--store", type=Path, metavar="DIR", help="feature store directory (not with --finetune)"
    )
    train.add_argument(
        "-o", "--output", type=Path, required=True, metavar="BUNDLE_DIR",
        help="bundle directory to write",
    )  # fmt: skip
    train.add_argument(
        "--extract-batch-size", type=int, default=None, metavar="N",
        help="most clips per encoder call while extracting (default: as `emofuse extract`, "
        "64 for Hugging Face models within 120 s of audio, 8 for the others)",
    )  # fmt: skip
    train.add_argument(
        "--workers", type=int, default=1,
        help="processes for CPU-bound feature extraction (default 1)",
    )  # fmt: skip
    train.add_argument(
        "--split-strategy", metavar="NAME", help="how SPLIT was made, recorded in the bundle"
    )
    train.add_argument(
        "--split-seed", type=int, metavar="N", help="the split's seed, recorded in the bundle"
    )
    train.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the Hugging Face encoder(s) end to end with the head "
        "(GPU advised; see emofuse.finetune.run); no model selection and speaker-norm off",
    )
    add_plugin_option(train)
    add_no_progress(train)
    add_verbose(
        train,
        "also print one line per training epoch (losses, val UAR); by default each phase "
        "(model selection, fit on train, calibration, refit on train + val) gets one line "
        "and its epochs a progress bar. Fine-tuning prints its (few, long) epochs always",
    )
    add_config_flags(
        train.add_argument_group("training settings"),
        TrainConfig,
        other_defaults={"with --finetune": FinetuneConfig},
    )
    add_config_flags(
        train.add_argument_group("fine-tuning settings (with --finetune)"),
        FinetuneConfig,
        skip={f for f in TrainConfig.__dataclass_fields__},
    )
    train.set_defaults(handler=run_train)


def _provenance(args: argparse.Namespace, table) -> dict:
    import hashlib

    digest = hashlib.sha256()
    for row in table[["id", "part"]].astype(str).itertuples(index=False):
        digest.update(f"{row.id}\t{row.part}\n".encode())
    record = {
        "split_file": str(args.split.resolve()),
        "split_digest": digest.hexdigest()[:16],
        "split_strategy": args.split_strategy,
        "split_seed": args.split_seed,
        "command": "emofuse " + " ".join(sys.argv[1:]),
    }
    from emofuse.splits import leakage_report

    try:
        leak = leakage_report(table)
        record["leakage"] = {
            "shared_speakers": leak.shared_speakers,
            "shared_texts": leak.shared_texts,
        }
    except (ValueError, KeyError, TypeError) as error:  # SplitError is a ValueError
        # the split is still trainable; say why its leakage figures are missing
        record["leakage"] = {"omitted": f"{type(error).__name__}: {error}"}
    return record


def _settings(args: argparse.Namespace):
    """The TrainConfig (or with --finetune the FinetuneConfig) the flags describe; a flag
    that belongs to the other kind of training is refused rather than ignored."""
    from emofuse.finetune.config import FinetuneConfig
    from emofuse.head.config import TrainConfig

    chosen, other = (
        (FinetuneConfig, TrainConfig) if args.finetune else (TrainConfig, FinetuneConfig)
    )
    stray = sorted(set(given_fields(args, other)) - set(given_fields(args, chosen)))
    if stray:
        flags = ", ".join(flag_name(f) for f in stray)
        raise CommandError(
            f"{flags} {'applies' if len(stray) == 1 else 'apply'} only "
            + ("without --finetune" if args.finetune else "with --finetune")
        )
    if args.finetune and args.store is not None:
        print(
            "note: --store is not used with --finetune (fine-tuning reads the clips themselves)",
            file=sys.stderr,
        )
    if not args.finetune and args.store is None:
        raise CommandError("--store DIR is required: the feature store to read and fill")
    try:
        return config_from_args(chosen, args)
    except ValueError as err:
        raise CommandError(str(err)) from None


def run_train(args: argparse.Namespace) -> int:
    from emofuse.bundle import BundleError, check_bundle_target
    from emofuse.cli.paths import check_output_paths

    load_plugins(args.plugin)
    config = _settings(args)
    check_output_paths([args.split, args.store], [], output_dirs=[args.output])
    try:  # before any training: never replace a folder that is not a bundle
        check_bundle_target(args.output)
    except BundleError as err:
        raise CommandError(str(err)) from None
    speech = args.speech or (OFFLINE_SPEECH if args.modality != TEXT else None)
    text = args.text or (OFFLINE_TEXT if args.modality != SPEECH else None)
    table, labels = read_table(args.split)
    if "part" not in table.columns:
        raise CommandError(
            f"{args.split}: no `part` column; make a split with `emofuse split` first"
        )
    provenance = _provenance(args, table)
    if args.finetune:
        return _run_finetune(args, table, labels, speech, text, config, provenance)

    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import PipelineError, train_and_evaluate

    reads = [f"speech {speech}"] if args.modality != TEXT else []
    reads += [f"text {text}"] if args.modality != SPEECH else []
    print(
        f"training a {args.modality} model on {args.split} ({' + '.join(reads)})", file=sys.stderr
    )
    try:
        run = train_and_evaluate(
            table, labels, modality=args.modality, store=args.store, speech=speech, text=text,
            config=config, out_dir=args.output, provenance=provenance,
            progress=not args.no_progress, batch_size=args.extract_batch_size, workers=args.workers,
            verbose=args.verbose,
        )  # fmt: skip
    except (PipelineError, EncoderError, FeatureStoreError, ValueError) as err:
        raise CommandError(str(err)) from None
    if run.metrics is not None:
        print_metrics(run.metrics)
    print(f"bundle written to {run.bundle_dir}")
    return 0


def _run_finetune(args, table, labels, speech, text, config, provenance) -> int:
    from emofuse.finetune.run import FinetuneError, finetune_and_evaluate

    try:
        run = finetune_and_evaluate(
            table, labels, modality=args.modality, speech=speech, text=text,
            config=config, out_dir=args.output, provenance=provenance,
            progress=not args.no_progress,
        )  # fmt: skip
    except (FinetuneError, ValueError) as err:
        raise CommandError(str(err)) from None
    if run.metrics is not None:
        print_metrics(run.metrics)
    if run.bundle_dir is not None:
        print(f"bundle written to {run.bundle_dir}")
    return 0
