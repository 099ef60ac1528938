"""`emofuse timeline BUNDLE RECORDING -o OUT/`: a long recording as an emotion timeline.

The recording is cut at pauses into segments of speech (Silero voice-activity detection;
long stretches split at their quietest point near --max-segment-s), each segment gets the
bundle's prediction and its words (--asr vosk, or --transcript FILE as SRT, VTT or CSV with
times), and OUT/ receives segments.csv, summary.json and timeline.png. Read in blocks:
memory stays bounded whatever the length. --channels separate gives one timeline per
channel (e.g. agent and customer of a stereo call). A bundle that adapts to speakers treats
each channel as one speaker: --adapt whole (default) normalises every segment by the
statistics of the whole channel, --adapt causal by those of the segments up to it (only
what came before, for live use); segments.csv then has a speaker_clips column.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, add_no_progress, build_asr, load_bundle
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins
from emofuse.cli.predict import add_min_confidence, check_min_confidence_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse.timeline.adapt import ADAPT_CHOICES
    from emofuse.timeline.run import CHANNEL_CHOICES, DEFAULT_BATCH_SIZE
    from emofuse.timeline.segment import SegmentSettings

    parser = add_command(
        subparsers, "timeline", run_timeline,
        help="a long recording -> segments.csv, summary.json, timeline.png", doc=__doc__,
    )  # fmt: skip
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    parser.add_argument(
        "recording", type=Path, metavar="RECORDING", help="WAV, FLAC, OGG or MP3 of any length"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="folder for segments.csv, summary.json and timeline.png")  # fmt: skip
    parser.add_argument("--asr", default="none", metavar="NAME",
                        help="words from speech recognition: vosk or none (default)")  # fmt: skip
    parser.add_argument("--transcript", type=Path, metavar="FILE",
                        help="the words with times: .srt, .vtt or .csv (start, end, text)")  # fmt: skip
    parser.add_argument("--channels", choices=CHANNEL_CHOICES, default="mix",
                        help="mix channels down, or one timeline per channel (default: mix)")  # fmt: skip
    parser.add_argument(
        "--adapt", choices=ADAPT_CHOICES, default="whole",
        help="a bundle that adapts to speakers (each channel one speaker): statistics of the "
        "whole channel (default), or causal: only the segments up to each one, for live use; "
        "ignored by other bundles",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"segments per model call (default {DEFAULT_BATCH_SIZE})")  # fmt: skip
    add_min_confidence(parser, "mark a segment uncertain when its top probability is below P")
    group = parser.add_argument_group("segmentation")
    for f in dataclasses.fields(SegmentSettings):
        group.add_argument(
            "--" + f.name.replace("_", "-"), type=float, default=f.default, metavar="X",
            help=f"{f.metadata['help']} (default {f.default:g})",
        )  # fmt: skip
    add_plugin_option(parser)
    add_no_progress(parser)


def settings_from(args: argparse.Namespace):  # -> SegmentSettings
    from emofuse.timeline.segment import SegmentSettings

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SegmentSettings)}
    try:
        return SegmentSettings(**values)
    except ValueError as err:
        message = str(err)
        for name in values:
            message = message.replace(f"SegmentSettings.{name}", "--" + name.replace("_", "-"))
        raise CommandError(message) from None


def _per_channel(args: argparse.Namespace) -> str:
    return " (channels counted apart)" if args.channels == "separate" else ""


def run_timeline(args: argparse.Namespace) -> int:
    from emofuse.audio import AudioError
    from emofuse.bundle import BundleError
    from emofuse.timeline import TimelineError, TranscriptError, build_timeline

    load_plugins(args.plugin)
    settings = settings_from(args)
    args.min_confidence = check_min_confidence_flag(args.min_confidence)
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.output.exists() and not args.output.is_dir():
        raise CommandError(f"{args.output}: exists and is not a folder")
    from emofuse.timeline.outputs import PLOT_FILE, SEGMENTS_FILE, SUMMARY_FILE

    written = [args.output / name for name in (SEGMENTS_FILE, SUMMARY_FILE, PLOT_FILE)]
    from emofuse.outputs import partial_path  # each is written as <name>.partial first

    written += [partial_path(path) for path in written]
    check_output_paths([args.bundle, args.recording, args.transcript], written)
    if args.transcript is not None and args.asr != "none":
        raise CommandError("give --asr or --transcript, not both")
    bundle = load_bundle(args.bundle)
    asr = build_asr(args.asr) if args.asr != "none" else None
    try:
        timeline = build_timeline(
            bundle, args.recording, settings=settings, asr=asr, transcript=args.transcript,
            channels=args.channels, progress=not args.no_progress, batch_size=args.batch_size,
            min_confidence=args.min_confidence, adapt=args.adapt,
        )  # fmt: skip
    except (AudioError, BundleError, TimelineError, TranscriptError) as err:
        raise CommandError(str(err)) from None
    paths = timeline.save(args.output)
    summary = timeline.summary
    if timeline.empty:
        print(timeline.message, file=sys.stderr)
    else:
        shares = sorted(summary["time_share"].items(), key=lambda kv: -kv[1]["share"])
        top = ", ".join(f"{label} {v['share']:.0%}" for label, v in shares[:3] if v["share"])
        print(
            f"{summary['segments']} segments, {summary['speech_s']:.0f} s of speech in "
            f"{summary['recording']['duration_s']:.0f} s{_per_channel(args)}; {top}; "
            f"{summary['transitions']['count']} changes of emotion",
            file=sys.stderr,
        )
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
