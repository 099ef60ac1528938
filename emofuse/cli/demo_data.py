"""`emofuse demo-data DIR`: write the built-in synthetic demo corpus (dataset-466 layout)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help="write the built-in demo corpus (synthetic, dataset-466 layout)",
        description=(
            "Write a small Korean emotion corpus made entirely by emofuse: real Korean "
            "sentences, synthetic voice-like audio whose prosody follows the emotion, laid "
            "out like AI-Hub dataset 466. The last --validation-speakers speakers form the "
            "Validation/ part. The same arguments give the same bytes."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="folder to write (empty or new)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--speakers", type=int, default=4, help="speakers (default: 4)")
    parser.add_argument(
        "--scripts-per-emotion",
        type=int,
        default=30,
        help="sentences per emotion, each read by every speaker (default: 30, at most 40)",
    )
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from emofuse.cli import CommandError
    from emofuse.demo import make_demo_corpus

    try:
        out = make_demo_corpus(
            args.directory,
            seed=args.seed,
            speakers=args.speakers,
            scripts_per_emotion=args.scripts_per_emotion,
            validation_speakers=args.validation_speakers,
            subtype=args.subtype,
            overwrite=args.force,
            progress=not args.quiet,
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
