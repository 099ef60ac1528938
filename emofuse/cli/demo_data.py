"""`emofuse demo-data DIR`: write the built-in synthetic demo corpus (dataset-466 layout).

Write a small Korean emotion corpus made entirely by emofuse: real Korean sentences,
synthetic voice-like audio whose prosody follows the emotion, laid out like AI-Hub
dataset 466. The last --validation-speakers speakers form the Validation/ part. The
same arguments give the same bytes."""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_no_progress, add_seed

HELP = "write the built-in demo corpus (synthetic, dataset-466 layout)"


def add_corpus_settings(parser: argparse.ArgumentParser) -> None:
    """--seed, --speakers and --scripts-per-emotion: what makes one demo corpus."""
    add_seed(parser)
    parser.add_argument("--speakers", type=int, default=4, help="speakers (default: 4)")
    parser.add_argument(
        "--scripts-per-emotion",
        type=int,
        default=30,
        help="sentences per emotion, each read by every speaker (default: 30, at most 40)",
    )


def corpus_settings(args: argparse.Namespace) -> dict[str, int]:
    return {
        "seed": args.seed,
        "speakers": args.speakers,
        "scripts_per_emotion": args.scripts_per_emotion,
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "demo-data", run, help=HELP, doc=__doc__)
    parser.add_argument("directory", metavar="DIR", help="folder to write (empty or new)")
    add_corpus_settings(parser)
    parser.add_argument(
        "--validation-speakers",
        type=int,
        default=1,
        help="speakers held out in Validation/ (default: 1; 0 for none)",
    )
    parser.add_argument(
        "--subtype",
        default="MS_ADPCM",
        choices=("MS_ADPCM", "PCM_16", "ULAW"),
        help="WAV encoding (default: MS_ADPCM, 4-bit; PCM_16 is about 4x larger)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an earlier demo corpus in DIR"
    )
    add_no_progress(parser, "--quiet")


def run(args: argparse.Namespace) -> int:
    from emofuse.demo.corpus import make_demo_corpus

    try:
        out = make_demo_corpus(
            args.directory,
            **corpus_settings(args),
            validation_speakers=args.validation_speakers,
            subtype=args.subtype,
            overwrite=args.force,
            progress=not args.no_progress,
        )
    except (ValueError, FileExistsError, NotADirectoryError) as err:
        raise CommandError(str(err)) from err
    except OSError as err:
        raise CommandError(f"{args.directory}: cannot write the corpus: {err}") from err

    wavs = list(Path(out).glob("*/원천데이터/*/*/*/*.wav"))
    size_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
    n_val = sum(1 for p in wavs if p.parts[-6] == "Validation")
    print(
        f"wrote {len(wavs)} clips ({len(wavs) - n_val} Training, {n_val} Validation, "
        f"{size_mb:.1f} MB) to {out}\n"
        f"next: emofuse prepare {out} -o corpus.parquet"
    )
    return 0
