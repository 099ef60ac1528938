"""`emofuse label POOL -o answers.csv`: a labelling page for a pool's clips.

A page served like `emofuse serve` (the same token rules, security headers and Host and
Origin checks; loopback by default) that plays each clip, shows its transcript (and, with
--bundle, the model's guess), takes a label by key (1-9 for the first nine labels, a
searchable list beyond), skips and undoes, and shows the progress per emotion. Every answer
is appended to answers.csv at once (id, label, annotator, time, action; an undo is a
`retract` line), so a killed server loses nothing and a restarted one resumes where each
annotator left off. Annotators are named by the token file (`NAME TOKEN` per line; a bare
token is named `token-` and 8 hex digits of its digest), or by --annotator on a server
without tokens. One server per answers.csv: a second one on the same file stops at
start-up. The server writes nothing but answers.csv (and, with --store, the vectors
there)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emofuse.cli import CommandError
from emofuse.cli.common import add_command, load_bundle
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins
from emofuse.cli.serve import add_connection_options, add_security_options, security_settings

STORE_HELP = (
    "with --bundle: the feature store to read the clips' vectors from and add missing ones "
    "to (shared with `suggest` and `extract`); default: computed at start-up into a "
    "temporary folder that is removed once the guesses are made"
)
#: The default --rate-limit of the labelling page (requests a minute per annotator).
LABEL_RATE_PER_MINUTE = 600.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "label", run, help="label a pool's clips in a web page -> answers.csv",
        doc=__doc__,
    )  # fmt: skip
    parser.add_argument(
        "pool", type=Path, metavar="POOL",
        help="the pool manifest (CSV, TSV, JSONL or Parquet; label column absent or blank)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="CSV",
        help="answers.csv: appended to (created if absent), read on start to resume",
    )  # fmt: skip
    parser.add_argument(
        "--bundle", type=Path, metavar="DIR",
        help="a model bundle: clips in the order `emofuse suggest` ranks them (its default "
        "strategy, over every unlabelled clip), the model's guess beside each, and its "
        "labels as the label set",
    )  # fmt: skip
    parser.add_argument("--store", type=Path, metavar="DIR", help=STORE_HELP)
    parser.add_argument(
        "--label-set", metavar="LABELS",
        help="the labels to choose from, in key order: 'korean', a comma list "
        "('calm,tense,sad') or a file with one label per line (default: the bundle's, "
        "else the labels the pool already uses)",
    )  # fmt: skip
    parser.add_argument(
        "--annotator", metavar="NAME",
        help="whose answers these are on a server without tokens (default: anonymous); "
        "with tokens, the token file names the annotators (NAME TOKEN per line)",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default: %(default)s)",
    )  # fmt: skip
    add_security_options(parser)
    add_connection_options(parser)
    add_plugin_option(parser)
    # Each answer is three requests (the label, the next clip, its audio): a quick annotator
    # must never meet serve's 120 a minute.
    parser.set_defaults(rate_limit=LABEL_RATE_PER_MINUTE)


def run(args: argparse.Namespace) -> int:
    from emofuse.serve.tokens import NAME_RULE, is_holder_name

    security, server = security_settings(args)
    if args.annotator is not None:
        if security.tokens is not None:
            raise CommandError(
                "--annotator: this server has API tokens, and each token names its annotator "
                "(a line 'NAME TOKEN' in --token-file); leave --annotator out"
            )
        if not is_holder_name(args.annotator):
            raise CommandError(f"--annotator {args.annotator!r}: {NAME_RULE}")
    if args.store is not None and args.bundle is None:
        raise CommandError("--store: the vectors are for the model's guesses; give --bundle too")
    inputs = [args.pool, args.bundle, args.token_file]
    check_output_paths(inputs, [args.output])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from emofuse.labelling.answers_lock import AnswersBusy, lock_answers

    existed = args.output.exists()
    try:
        lock = lock_answers(args.output)
    except AnswersBusy as err:
        raise CommandError(str(err)) from None
    try:
        with lock:
            _serve(args, security, server)
    finally:
        if not existed and args.output.exists() and args.output.stat().st_size == 0:
            args.output.unlink()  # nothing answered: leave no empty file behind
    return 0


def _serve(args: argparse.Namespace, security: Any, server: Any) -> None:
    from emofuse.corpus.answers import ANONYMOUS
    from emofuse.labelling.app import create_label_app
    from emofuse.serve.server import serve

    desk = _build_desk(args)

    app = create_label_app(desk, security=security, annotator=args.annotator or ANONYMOUS)
    progress = desk.queue.progress(args.annotator or ANONYMOUS)
    access = (
        f"{len(security.tokens)} API token(s)"
        if security.tokens is not None
        else f"NO authentication; answers by {args.annotator or ANONYMOUS}"
    )
    print(
        f"labelling {progress.pool_size} clips ({progress.answered_by_anyone} answered so far) "
        f"with {len(desk.labels)} labels on {server.scheme}://{args.host}:{args.port}/ "
        f"({access})",
        flush=True,
    )
    serve(app, server)


def _build_desk(args: argparse.Namespace):
    from emofuse.corpus.pool import read_pool
    from emofuse.corpus.scan import CorpusError
    from emofuse.labelling.desk import LabellingDesk
    from emofuse.labelling.label_set import LabelSetError, check_label_set, read_label_set
    from emofuse.labels import LabelSet

    if args.bundle is not None and args.label_set is not None:
        raise CommandError(
            "--label-set: the bundle's labels are the label set; give one of the two"
        )
    try:
        pool = read_pool(args.pool)
    except (CorpusError, FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from None
    if len(pool.problems):
        print(f"{args.pool}: {len(pool.problems)} row(s) left out:", file=sys.stderr)
        for reason, count in pool.problems["reason"].str.split(":").str[0].value_counts().items():
            print(f"  {reason}: {count}", file=sys.stderr)
    bundle = None
    try:
        if args.label_set is not None:
            labels = read_label_set(args.label_set)
        elif args.bundle is not None:
            load_plugins(args.plugin)
            bundle = load_bundle(args.bundle)
            labels = check_label_set(LabelSet(tuple(bundle.labels)), str(args.bundle))
        elif pool.labels:
            labels = check_label_set(LabelSet(tuple(pool.labels)), f"{args.pool} (its labels)")
        else:
            raise CommandError(
                f"{args.pool}: no clip has a label yet, so there is no label set to offer: "
                "give --label-set (e.g. 'korean' or 'calm,tense,sad') or --bundle"
            )
    except LabelSetError as err:
        raise CommandError(f"--label-set {err}") from None
    order = guesses = None
    if bundle is not None:
        from emofuse.labelling.ranking import bundle_order

        print(
            f"ranking {int((~pool.labelled).sum())} clips as `emofuse suggest` would ...",
            flush=True,
        )
        try:
            order, guesses = bundle_order(bundle, pool, store=args.store, progress=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise CommandError(f"{args.bundle}: cannot predict the pool's clips: {err}") from None
    try:
        desk = LabellingDesk(pool, labels, args.output, order=order, guesses=guesses)
    except ValueError as err:  # not an answers file
        raise CommandError(str(err)) from None
    if not desk.queue.order:
        raise CommandError(f"{args.pool}: every clip already has a label: nothing to label")
    if desk.foreign_answers:
        print(
            f"warning: {args.output}: {desk.foreign_answers} answer(s) name clips that are not "
            "in this pool's labelling order (another pool's answers?); they are kept, not shown",
            file=sys.stderr,
        )
    if desk.skipped_lines:
        line, why = desk.skipped_lines[-1]
        print(
            f"warning: {args.output}: {len(desk.skipped_lines)} line(s) could not be read and "
            f"are left out (e.g. line {line}: {why}; a line cut by a kill)",
            file=sys.stderr,
        )
    return desk
