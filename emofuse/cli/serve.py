"""`emofuse serve BUNDLE`: the HTTP prediction service and its web page."""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.plugins import add_plugin_option, load_plugins

#: ServeLimits fields -> the flags that set them (for error messages).
_FLAGS = {
    "max_body_bytes": "--max-body-mb",
    "max_audio_s": "--max-audio-s",
    "max_batch_files": "--max-batch-files",
    "max_in_flight": "--workers-in-flight",
    "queue_timeout_s": "--queue-timeout-s",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse.serve.limits import MB, ServeLimits

    defaults = ServeLimits()
    parser = subparsers.add_parser(
        "serve",
        help="serve a model bundle over HTTP (JSON API + a web page)",
        description=(
            "Load BUNDLE once and serve POST /predict, POST /predict/batch, GET /health, "
            "GET /labels, the API docs at /docs and an upload/record page at /."
        ),
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="model bundle directory")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--asr",
        choices=("none", "vosk"),
        default="none",
        help="transcribe clips that arrive without text (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=defaults.max_body_bytes / MB,
        help="largest request body in MB (default: %(default)g)",
    )
    parser.add_argument(
        "--max-audio-s",
        type=float,
        default=defaults.max_audio_s,
        help="longest accepted clip in seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--max-batch-files",
        type=int,
        default=defaults.max_batch_files,
        help="most clips in one /predict/batch request (default: %(default)s)",
    )
    parser.add_argument(
        "--workers-in-flight",
        type=int,
        default=defaults.max_in_flight,
        metavar="N",
        help="predictions computed at once; more requests wait (default: %(default)s)",
    )
    parser.add_argument(
        "--queue-timeout-s",
        type=float,
        default=defaults.queue_timeout_s,
        help="how long a request waits for a slot before a 503 (default: %(default)g)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default: %(default)s)",
    )
    add_plugin_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from emofuse.serve.limits import MB, ServeLimits

    try:
        limits = ServeLimits(
            max_body_bytes=int(args.max_body_mb * MB),
            max_audio_s=args.max_audio_s,
            max_batch_files=args.max_batch_files,
            max_in_flight=args.workers_in_flight,
            queue_timeout_s=args.queue_timeout_s,
        )
    except ValueError as err:
        message = str(err)
        for field, flag in _FLAGS.items():
            message = message.replace(f"ServeLimits.{field}", flag)
        raise CommandError(message) from None
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, not {args.port}")
    if not args.bundle.is_dir():
        raise CommandError(f"{args.bundle}: no such bundle directory")

    import uvicorn

    from emofuse.bundle import Bundle
    from emofuse.serve.app import create_app

    load_plugins(args.plugin)
    print(f"loading {args.bundle} ...", flush=True)
    try:
        bundle = Bundle.load(args.bundle)
    except (OSError, ValueError) as err:
        raise CommandError(f"{args.bundle}: cannot load bundle: {err}") from None
    asr = None
    if args.asr != "none":
        from emofuse.asr import build_asr

        try:
            asr = build_asr(args.asr)
        except (ImportError, OSError, RuntimeError, ValueError) as err:
            raise CommandError(f"--asr {args.asr}: {err}") from None
    print(f"warming up the {bundle.modality} model ...", flush=True)
    try:  # the warm-up rebuilds the encoders: a changed fingerprint or a missing model shows here
        app = create_app(bundle, limits=limits, asr=asr)
    except (ValueError, RuntimeError) as err:
        raise CommandError(f"{args.bundle}: cannot start the service: {err}") from None
    print(f"serving {args.bundle} on http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
