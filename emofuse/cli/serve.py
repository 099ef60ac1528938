"""`emofuse serve BUNDLE`: the HTTP prediction service and its web page."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from emofuse.cli import CommandError
from emofuse.cli.plugins import add_plugin_option, load_plugins
from emofuse.cli.predict import check_min_confidence_flag

#: ServeLimits fields -> the flags that set them (for error messages).
_FLAGS = {
    "max_body_bytes": "--max-body-mb",
    "max_audio_s": "--max-clip-s",
    "max_batch_files": "--max-batch-files",
    "max_in_flight": "--workers-in-flight",
    "queue_timeout_s": "--queue-timeout-s",
    "port": "--port",
    "rate_per_minute": "--rate-limit",
    "rate_burst": "--rate-burst",
    "body_idle_timeout_s": "--body-timeout-s",
    "cors_origins": "--cors-origin",
    "header_timeout_s": "--header-timeout-s",
    "keep_alive_timeout_s": "--keep-alive-s",
    "max_connections": "--max-connections",
    "max_header_bytes": "--max-header-kb",
    "ssl_certfile": "--ssl-certfile",
    "ssl_keyfile": "--ssl-keyfile",
}

#: The number flags whose default is a settings value, and their help (the default is
#: appended by :func:`_add_number`).
_NUMBER_HELP = {
    "--max-body-mb": "largest request body in MB",
    "--max-batch-files": "most clips in one /predict/batch request",
    "--workers-in-flight": "predictions computed at once; more requests wait",
    "--queue-timeout-s": "how long a request waits for a slot before a 503",
    "--rate-limit": "requests a minute per token (or per address without one); 0 = none",
    "--rate-burst": "requests a client may send at once before --rate-limit applies",
    "--header-timeout-s": (
        "close a connection that has not sent a request's headers within this time"
    ),
    "--body-timeout-s": "answer 408 when an upload stops arriving for this long",
    "--keep-alive-s": "close an idle keep-alive connection after this long",
    "--max-connections": "most open connections; requests beyond get 503",
    "--max-header-kb": "largest request line + headers",
    "--max-speakers": (
        "speaker sessions whose running statistics are kept in memory (a model that adapts "
        "to speakers); the least recently used is forgotten beyond"
    ),
    "--speaker-ttl-s": "forget a speaker session unused for this many seconds",
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
    _add_number(parser, "--max-body-mb", float, defaults.max_body_bytes / MB)
    parser.add_argument(
        "--max-clip-s",
        "--max-audio-s",
        dest="max_audio_s",
        type=float,
        metavar="S",
        default=defaults.max_audio_s,
        help="longest accepted clip in seconds, refused (413) from its header before decoding; "
        "at most, and by default, the clip limit of every command "
        "(emofuse.audio_checks.MAX_CLIP_S); it lowers this server's limit only "
        "(default: %(default)g); long recordings: POST /timeline",
    )
    parser.add_argument(
        "--timeline-max-mb",
        type=float,
        metavar="MB",
        default=None,
        help="largest upload to POST /timeline (a long recording) in MB; the other routes "
        "keep --max-body-mb (default: 512, TimelineLimits.max_body_bytes)",
    )
    _add_number(parser, "--max-batch-files", int, defaults.max_batch_files)
    _add_number(parser, "--workers-in-flight", int, defaults.max_in_flight, metavar="N")
    _add_number(parser, "--queue-timeout-s", float, defaults.queue_timeout_s)
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="mark a prediction uncertain when its top probability is below P (0 to 1; a "
        "request may send its own min_confidence; the label is kept either way; "
        "default: off)",
    )
    from emofuse.serve.speakers import DEFAULT_IDLE_TTL_S, DEFAULT_MAX_SESSIONS

    _add_number(parser, "--max-speakers", int, DEFAULT_MAX_SESSIONS, metavar="N")
    _add_number(parser, "--speaker-ttl-s", float, DEFAULT_IDLE_TTL_S)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default: %(default)s)",
    )
    add_security_options(parser)
    add_connection_options(parser)
    add_plugin_option(parser)
    parser.set_defaults(handler=run)


def add_security_options(parser: argparse.ArgumentParser) -> None:
    """The "access and privacy" flags (tokens, CORS, rate limits) of a web command."""
    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.tokens import TOKEN_ENV

    defaults = SecuritySettings()
    group = parser.add_argument_group("access and privacy")
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=(
            "file of API tokens, one per line (re-read when it changes); every route but a "
            f"minimal GET /health then needs 'Authorization: Bearer TOKEN' (or set {TOKEN_ENV})"
        ),
    )
    group.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback --host without a token (anyone who reaches it may use it)",
    )
    group.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help=(
            "let pages of another site (e.g. https://lab.example.org) call the API; "
            "repeat for several, '*' for any (default: same origin only)"
        ),
    )
    _add_number(group, "--rate-limit", float, defaults.rate_per_minute, metavar="N")
    _add_number(group, "--rate-burst", int, defaults.rate_burst, metavar="N")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The "connections and TLS" flags (timeouts, connection and header limits, HTTPS)."""
    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.server import ServerSettings

    defaults = ServerSettings()
    group = parser.add_argument_group("connections and TLS")
    _add_number(group, "--header-timeout-s", float, defaults.header_timeout_s)
    _add_number(group, "--body-timeout-s", float, SecuritySettings().body_idle_timeout_s)
    _add_number(group, "--keep-alive-s", int, defaults.keep_alive_timeout_s)
    _add_number(group, "--max-connections", int, defaults.max_connections, metavar="N")
    _add_number(group, "--max-header-kb", int, defaults.max_header_bytes // 1024, metavar="KB")
    group.add_argument(
        "--ssl-certfile", type=Path, metavar="PEM", help="serve HTTPS with this certificate"
    )
    group.add_argument("--ssl-keyfile", type=Path, metavar="PEM", help="... and this key")


def _add_number(
    group: argparse._ActionsContainer,
    flag: str,
    kind: type[int] | type[float],
    default: float,
    *,
    metavar: str | None = None,
) -> None:
    """A number flag that defaults to a settings value; its help (:data:`_NUMBER_HELP`)
    ends with that default."""
    shown = "%(default)g" if kind is float else "%(default)s"
    help_text = f"{_NUMBER_HELP[flag]} (default: {shown})"
    group.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)


def is_loopback(host: str) -> bool:
    """Is ``host`` reachable from this machine only?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _settings_error(err: ValueError) -> CommandError:
    message = str(err)
    for field, flag in _FLAGS.items():
        for owner in ("ServeLimits", "SecuritySettings", "ServerSettings"):
            message = message.replace(f"{owner}.{field}", flag)
    return CommandError(message)


def security_settings(args: argparse.Namespace):
    """The SecuritySettings and ServerSettings from the flags, refusing an open bind."""
    from emofuse.serve.security import SecuritySettings
    from emofuse.serve.server import ServerSettings
    from emofuse.serve.tokens import TOKEN_ENV, TokenError, load_tokens

    try:
        tokens = load_tokens(args.token_file)
    except TokenError as err:
        source = "--token-file" if args.token_file is not None else TOKEN_ENV
        raise CommandError(f"{source}: {err}") from None
    if args.token_file is not None and args.token_file.stat().st_mode & 0o077:
        print(
            f"warning: {args.token_file} can be read by other users of this machine "
            f"(chmod 600 {args.token_file})",
            file=sys.stderr,
        )
    if tokens is None and not is_loopback(args.host) and args.allow_unauthenticated:
        print(
            f"warning: serving {args.host} WITHOUT authentication: anyone who can reach it "
            "can use it",
            file=sys.stderr,
        )
    if tokens is None and not is_loopback(args.host) and not args.allow_unauthenticated:
        raise CommandError(
            f"refusing to serve {args.host} without authentication: give --token-file PATH "
            f"(or set {TOKEN_ENV}), or pass --allow-unauthenticated if anyone who can reach "
            "it may use it"
        )
    try:
        security = SecuritySettings(
            tokens=tokens,
            cors_origins=tuple(args.cors_origin),
            rate_per_minute=args.rate_limit,
            rate_burst=args.rate_burst,
            body_idle_timeout_s=args.body_timeout_s,
            local_hosts_only=tokens is None and is_loopback(args.host),
        )
        server = ServerSettings(
            host=args.host,
            port=args.port,
            header_timeout_s=args.header_timeout_s,
            keep_alive_timeout_s=args.keep_alive_s,
            max_connections=args.max_connections,
            max_header_bytes=args.max_header_kb * 1024,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            log_level=args.log_level,
        )
    except ValueError as err:
        raise _settings_error(err) from None
    return security, server


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
        raise _settings_error(err) from None
    if args.timeline_max_mb is not None and not args.timeline_max_mb > 0:
        raise CommandError(f"--timeline-max-mb must be positive, not {args.timeline_max_mb:g}")
    min_confidence = check_min_confidence_flag(args.min_confidence)
    from emofuse.serve.speakers import SpeakerSessions

    try:
        speakers = SpeakerSessions(args.max_speakers, args.speaker_ttl_s)
    except ValueError as err:
        message = str(err).replace("max_sessions", "--max-speakers")
        raise CommandError(message.replace("idle_ttl_s", "--speaker-ttl-s")) from None
    security, server = security_settings(args)  # before the slow bundle load
    if not args.bundle.is_dir():
        raise CommandError(f"{args.bundle}: no such bundle directory")

    from emofuse.bundle import Bundle
    from emofuse.serve.app import create_app
    from emofuse.serve.server import serve
    from emofuse.serve.timeline_route import TimelineLimits, include_timeline

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
        app = create_app(
            bundle, limits=limits, asr=asr, security=security, min_confidence=min_confidence,
            speaker_sessions=speakers,
        )  # fmt: skip
        if args.timeline_max_mb is not None:
            include_timeline(app, TimelineLimits(max_body_bytes=int(args.timeline_max_mb * MB)))
    except (ValueError, RuntimeError) as err:
        raise CommandError(f"{args.bundle}: cannot start the service: {err}") from None
    access = (
        f"{len(security.tokens)} API token(s)"
        if security.tokens is not None
        else "NO authentication"
    )
    print(
        f"serving {args.bundle} on {server.scheme}://{args.host}:{args.port}/ "
        f"(docs at /docs; {access})",
        flush=True,
    )
    serve(app, server)
    return 0
