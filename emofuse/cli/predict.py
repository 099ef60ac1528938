"""`emofuse predict`: a bundle applied to one clip (printed) or to a manifest of clips
(streamed to a CSV); the work is :mod:`emofuse.predict`'s."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_no_progress, build_asr, load_bundle
from emofuse.cli.plugins import add_plugin_option, load_plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="predict the emotion of clips with a bundle",
        description=(
            "One clip: `emofuse predict BUNDLE clip.wav [--text '...'] [--asr vosk]`. "
            "Many: `emofuse predict BUNDLE --manifest clips.csv -o predictions.csv` (columns "
            "audio and optional text; relative paths are relative to the manifest). Rows are "
            "read, predicted and written in chunks, so any size of manifest fits in memory. A "
            "bad row gets an `error` value and the rest go on; the exit status is 1 if any "
            "row failed. Clips longer than --max-clip-s are refused from their header before "
            "decoding (the one length limit of every command, emofuse.audio_checks.MAX_CLIP_S); "
            "for a long recording use `emofuse timeline`. With --min-confidence P a "
            "prediction whose top probability is below P is marked uncertain (printed, or an "
            "`uncertain` column); its label stays the most probable one. A bundle trained "
            "with speaker adaptation normalises each manifest row by the statistics of all "
            "the rows of its speaker (the `speaker` column, or --speaker-column NAME; a blank "
            "cell: none), read in a first pass; a `speaker_clips` column says how many clips "
            "they came from. One clip: --speaker-column has nothing to group, so it is "
            "scored unadapted."
        ),
    )
    predict.add_argument("bundle", type=Path, metavar="BUNDLE")
    predict.add_argument(
        "audio", type=Path, nargs="?", metavar="AUDIO",
        help="audio file (omit for a text-only model given --text)",
    )  # fmt: skip
    predict.add_argument("--text", metavar="TEXT", help="the transcript of the clip")
    predict.add_argument(
        "--asr", default="none", metavar="NAME",
        help="transcribe clips without text: vosk or none (default)",
    )  # fmt: skip
    predict.add_argument(
        "--manifest", type=Path, metavar="FILE",
        help="CSV/TSV/Parquet with `audio` and optional `text`, `id` columns",
    )  # fmt: skip
    predict.add_argument(
        "-o", "--output", type=Path, metavar="CSV",
        help="with --manifest: where to write predictions (.csv, .tsv or .parquet: the "
        "format follows the extension)",
    )  # fmt: skip
    predict.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="clips per model call (default 16)"
    )
    predict.add_argument(
        "--speaker-column", metavar="NAME", default=None,
        help="with --manifest and a bundle that adapts to speakers: the column naming each "
        "row's speaker (default: `speaker` when the manifest has one; without one, rows are "
        "scored unadapted and one line says so)",
    )  # fmt: skip
    predict.add_argument(
        "--no-speaker-adapt", action="store_true",
        help="score every row unadapted, even with a bundle that adapts to speakers",
    )  # fmt: skip
    add_max_clip_s(predict, "refuse (from the header, before decoding) clips longer than this")
    add_min_confidence(predict, "mark a prediction uncertain when its top probability is below P")
    add_plugin_option(predict)
    add_no_progress(predict)
    predict.set_defaults(handler=run_predict)


def add_max_clip_s(parser: argparse.ArgumentParser, help: str) -> None:
    """``--max-clip-s``, defaulting to the one length limit (emofuse.audio_checks)."""
    from emofuse import audio_checks

    parser.add_argument(
        "--max-clip-s", type=float, default=None, metavar="S",
        help=f"{help} (default {audio_checks.MAX_CLIP_S:g} = emofuse.audio_checks.MAX_CLIP_S; "
        "longer recordings: `emofuse timeline`)",
    )  # fmt: skip


def add_min_confidence(parser: argparse.ArgumentParser, help: str) -> None:
    """``--min-confidence P``: the threshold of :func:`emofuse.head.confidence.is_uncertain`."""
    parser.add_argument(
        "--min-confidence", type=float, default=None, metavar="P",
        help=f"{help} (a probability in [0, 1]; default: off; the label is kept either way)",
    )  # fmt: skip


def check_min_confidence_flag(value: float | None) -> float | None:
    """``--min-confidence`` checked, or a :class:`CommandError` that names the flag."""
    from emofuse.head.confidence import check_min_confidence

    try:
        return check_min_confidence(value, "--min-confidence")
    except ValueError as err:
        raise CommandError(str(err)) from None


def _engine(args: argparse.Namespace, bundle):
    from emofuse.predict.engine import PredictionEngine

    return PredictionEngine(
        bundle, asr=build_asr(args.asr), batch_size=args.batch_size,
        max_duration_s=args.max_clip_s, min_confidence=args.min_confidence,
    )  # fmt: skip


def format_prediction(
    prediction, min_confidence: float | None = None, *, clip: str | None = None
) -> str:
    """What `predict` prints for one clip: the label, the clip, and the distribution; a
    ``both`` bundle's speech-only and text-only distributions beside the fused one, and
    whether those two name the same label."""
    lines = [f"label: {prediction.label}"]
    if min_confidence is not None:
        top = max(prediction.probabilities.values())
        lines.append(
            f"uncertain: yes (top probability {top:.3f} < --min-confidence {min_confidence:g})"
            if prediction.uncertain
            else f"uncertain: no (top probability {top:.3f} >= --min-confidence {min_confidence:g})"
        )
    if clip is not None:
        lines.append(f"clip: {clip}")
    singles = _single_modalities(prediction)
    if singles:
        lines.append(_agreement_line(prediction, singles))
    if prediction.text is not None:
        lines.append(f"text: {prediction.text}")
    lines += [f"warning: {w}" for w in prediction.extra.get("warnings", [])]
    width = max(len(label) for label in prediction.probabilities)
    ranked = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
    if not singles:
        for label, p in ranked:
            lines.append(f"  {label:{width}}  {p:.3f}  {'#' * round(p * 30)}")
        return "\n".join(lines)
    heads = ["fused", *(f"{m}-only" for m in singles)]
    lines.append(f"  {'':{width}}  " + "  ".join(heads))
    for label, p in ranked:
        cells = [f"{p:>{len(heads[0])}.3f}"] + [
            f"{singles[m].get(label, float('nan')):>{len(head)}.3f}"
            for m, head in zip(singles, heads[1:], strict=True)
        ]
        lines.append(f"  {label:{width}}  " + "  ".join(cells) + f"  {'#' * round(p * 30)}")
    return "\n".join(lines)


def _single_modalities(prediction) -> dict[str, dict[str, float]]:
    """The speech-only and text-only distributions of a ``both`` bundle, in that order
    (empty for a bundle without them)."""
    found = getattr(prediction, "by_modality", None) or {}
    return {m: found[m] for m in ("speech", "text") if found.get(m)}


def _agreement_line(prediction, singles: dict[str, dict[str, float]]) -> str:
    tops = {m: max(probs, key=probs.get) for m, probs in singles.items()}
    agree = prediction.agree
    if agree is None:
        agree = len(set(tops.values())) == 1
    if len(tops) < 2:
        return "; ".join(f"{m}-only says {top}" for m, top in tops.items())
    if agree:
        return f"agree: yes (speech-only and text-only both say {tops['speech']})"
    return f"agree: no (speech-only says {tops['speech']}, text-only says {tops['text']})"


def run_predict(args: argparse.Namespace) -> int:
    from emofuse.audio import AudioError
    from emofuse.bundle import BundleError
    from emofuse.predict.engine import PredictInput

    load_plugins(args.plugin)
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {args.batch_size}")
    limit = args.max_clip_s
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise CommandError(f"--max-clip-s must be a positive number of seconds, not {limit:g}")
    args.min_confidence = check_min_confidence_flag(args.min_confidence)
    if args.manifest is not None:
        return _run_manifest(args)
    if args.output is not None:
        raise CommandError("-o goes with --manifest; one clip's prediction is printed")
    if args.speaker_column is not None:
        raise CommandError(
            "--speaker-column goes with --manifest (one clip has no speaker to group)"
        )
    bundle = load_bundle(args.bundle)
    # A blank --text goes on: the engine says it is blank.
    if args.audio is None and (bundle.needs_audio or args.text is None):
        raise CommandError(
            "give an audio file" + ("" if bundle.needs_audio else " or --text '...'")
            + f" (this is a {bundle.modality} model)"
        )  # fmt: skip
    engine = _engine(args, bundle)
    try:
        (prediction,) = engine.predict([PredictInput(args.audio, args.text)])
    except (AudioError, BundleError) as err:
        raise CommandError(str(err)) from None
    clip = str(args.audio) if args.audio is not None else None
    print(format_prediction(prediction, args.min_confidence, clip=clip))
    from emofuse.predict.speakers import adapts_to_speakers

    if adapts_to_speakers(bundle) and args.audio is not None:
        print(
            "note: this model adapts to speakers, but one clip has no other clips of its "
            "speaker: scored unadapted (predict --manifest with a speaker column, or "
            "Bundle.predict(..., speaker=...), gives it the statistics of its speaker's clips)",
            file=sys.stderr,
        )
    return 0


def _run_manifest(args: argparse.Namespace) -> int:
    from emofuse.bundle import BundleError
    from emofuse.cli.paths import check_output_paths
    from emofuse.predict.manifest import predict_manifest

    if args.audio is not None or args.text is not None:
        raise CommandError("give either --manifest or one AUDIO [--text], not both")
    if args.output is None:
        raise CommandError("--manifest needs -o predictions.csv")
    if not args.manifest.exists():
        raise CommandError(f"{args.manifest}: no such manifest")
    from emofuse.outputs import TableFormatError, partial_path, table_format

    try:  # the format follows the extension: .csv, .tsv or .parquet
        table_format(args.output)
    except TableFormatError as err:
        raise CommandError(f"-o {err}") from None
    check_output_paths([args.manifest, args.bundle], [args.output, partial_path(args.output)])
    bundle = load_bundle(args.bundle)
    engine = _engine(args, bundle)
    try:
        column = _speaker_column(args, bundle)
        if column is not None:
            from emofuse.predict.speakers import predict_by_speaker

            summary = predict_by_speaker(
                engine, args.manifest, args.output, column=column, progress=not args.no_progress
            )
        else:
            summary = predict_manifest(
                engine, args.manifest, args.output, progress=not args.no_progress
            )
    except BundleError as err:  # e.g. an encoder whose fingerprint changed since training
        raise CommandError(str(err)) from None
    except (ValueError, UnicodeDecodeError) as err:  # pandas / pyarrow on a broken manifest
        raise CommandError(f"{args.manifest}: unreadable manifest ({err})") from None
    ok = summary.rows - summary.failed
    print(
        f"{ok} of {summary.rows} clips predicted, {summary.failed} errors -> {args.output}",
        file=sys.stderr,
    )
    for row, message in summary.first_errors:
        print(f"  row {row}: {message}", file=sys.stderr)
    return 1 if summary.failed else 0


def _speaker_column(args: argparse.Namespace, bundle) -> str | None:
    """The manifest column rows are grouped by, or None (then one line says why, when the
    bundle adapts to speakers or a column was asked for)."""
    from emofuse.predict.speakers import (
        SPEAKER_COLUMN,
        adapts_to_speakers,
        find_speaker_column,
        manifest_columns,
    )

    asked = args.speaker_column
    if not adapts_to_speakers(bundle):
        if asked is not None:
            print(
                f"note: {args.bundle} does not adapt to speakers (trained with speaker "
                "normalisation off): --speaker-column is not used",
                file=sys.stderr,
            )
        return None
    if args.no_speaker_adapt:
        print("note: --no-speaker-adapt: every row is scored unadapted", file=sys.stderr)
        return None
    columns = manifest_columns(args.manifest)
    found = find_speaker_column(columns, asked or SPEAKER_COLUMN)
    if found is None and asked is not None:
        raise CommandError(f"{args.manifest}: no column {asked!r} (columns: {columns})")
    if found is None:
        print(
            f"note: {args.bundle} adapts to speakers, but {args.manifest} has no "
            f"`{SPEAKER_COLUMN}` column: every row is scored unadapted (name the column "
            "with --speaker-column NAME)",
            file=sys.stderr,
        )
    return found
