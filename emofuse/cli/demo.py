"""`emofuse demo`: the whole pipeline on the built-in demo corpus, offline."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the built-in demo corpus (offline)",
        description=(
            "Make the built-in demo corpus, prepare it, split it script-disjoint, extract "
            "offline speech and text features, train speech-only, text-only and multimodal "
            "models, evaluate them, and print a results table. A second run reuses the "
            "corpus and the cached features."
        ),
    )
    parser.add_argument("-o", "--output", default="emofuse-demo", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--speech", default=None, help="speech encoder spec (default: offline)")
    parser.add_argument("--text", default=None, help="text encoder spec (default: offline)")
    parser.add_argument("--workers", type=int, default=2, help="feature extraction processes")
    parser.add_argument("--speakers", type=int, default=4, help="demo corpus speakers")
    parser.add_argument(
        "--scripts-per-emotion", type=int, default=30, help="demo corpus sentences per emotion"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from emofuse.cli import CommandError
    from emofuse.encoders import EncoderError
    from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import PipelineError
    from emofuse.walkthrough import results_markdown, run_walkthrough

    try:
        result = run_walkthrough(
            args.output,
            seed=args.seed,
            speech=args.speech or OFFLINE_SPEECH,
            text=args.text or OFFLINE_TEXT,
            workers=args.workers,
            speakers=args.speakers,
            scripts_per_emotion=args.scripts_per_emotion,
            progress=not args.quiet,
        )
    except (EncoderError, FeatureStoreError, PipelineError, FileExistsError, ValueError) as err:
        raise CommandError(str(err)) from err
    out = result.out_dir
    print()
    print(results_markdown(result.results))
    print()
    print(f"finished in {result.seconds:.0f} s; everything is in {out}/")
    print("  results.csv, results.md, modalities.png; bundles/<modality>/ (model + evaluation/)")
    some_wav = next((out / "corpus").rglob("*.wav"), None)
    if some_wav is not None:
        print("try:")
        print(f"  emofuse predict {out}/bundles/both {some_wav} --text '오늘 정말 기분이 좋아요'")
        print(f"  emofuse serve {out}/bundles/both")
    return 0
