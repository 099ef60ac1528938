"""`emofuse demo`: the whole pipeline on the built-in demo corpus, offline.

Make the built-in demo corpus, prepare it, split it script-disjoint, extract offline
speech and text features, train speech-only, text-only and multimodal models, evaluate
them, and print a results table. A second run reuses the corpus (while --seed,
--speakers and --scripts-per-emotion stay the same) and the cached features."""

from __future__ import annotations

import argparse

from emofuse.cli.common import add_command, add_no_progress, add_output
from emofuse.cli.demo_data import add_corpus_settings, corpus_settings

HELP = "run the whole pipeline on the built-in demo corpus (offline)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "demo", run, help=HELP, doc=__doc__)
    add_output(parser, "output folder (default: emofuse-demo)", default="emofuse-demo")
    add_corpus_settings(parser)
    parser.add_argument("--speech", default=None, help="speech encoder spec (default: offline)")
    parser.add_argument("--text", default=None, help="text encoder spec (default: offline)")
    parser.add_argument("--workers", type=int, default=2, help="feature extraction processes")
    add_no_progress(parser, "--quiet")


def run(args: argparse.Namespace) -> int:
    from emofuse.cli import CommandError
    from emofuse.demo.walkthrough import results_markdown, run_walkthrough
    from emofuse.encoders import EncoderError
    from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT
    from emofuse.features import FeatureStoreError
    from emofuse.pipeline import PipelineError

    try:
        result = run_walkthrough(
            args.output,
            **corpus_settings(args),
            speech=args.speech or OFFLINE_SPEECH,
            text=args.text or OFFLINE_TEXT,
            workers=args.workers,
            progress=not args.no_progress,
        )
    except (EncoderError, FeatureStoreError, PipelineError, FileExistsError, ValueError) as err:
        raise CommandError(str(err)) from err
    out = result.out_dir
    print()
    print(results_markdown(result.results))
    print()
    print(result.context)
    print()
    print(f"finished in {result.seconds:.0f} s; everything is in {out}/")
    print("  results.csv, results.md, modalities.png; bundles/<modality>/ (model + evaluation/)")
    some_wav = next((out / "corpus").rglob("*.wav"), None)
    if some_wav is not None:
        print("try:")
        print(f"  emofuse predict {out}/bundles/both {some_wav} --text '오늘 정말 기분이 좋아요'")
        print(f"  emofuse serve {out}/bundles/both")
    return 0
