"""`emofuse prepare SOURCE -o corpus.parquet`: scan a corpus once into the utterance
table (plus a problems report) that every later step reads.

Scan a corpus (AI-Hub dataset 466 folder, flat WAV+JSON folder, or a CSV/TSV/JSONL
manifest) into the utterance table. Bad files never stop the scan: they are listed in
the problems report. With --answers, SOURCE is an unlabelled pool (CSV/TSV/JSONL/Parquet)
and its labels come from the answers file that `emofuse label` writes."""

from __future__ import annotations

import argparse
from pathlib import Path

from emofuse.cli.common import add_command, add_no_progress, add_output, check_table_output
from emofuse.cli.paths import check_output_paths
from emofuse.outputs import TableFormatError, TableWriter, table_format, write_whole


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "prepare", run, doc=__doc__, help="scan a corpus into the utterance table"
    )
    parser.add_argument("source", help="corpus folder or manifest file")
    add_output(parser, "table to write (.parquet, or .csv)")
    parser.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "aihub466", "flat", "manifest"),
        help="corpus layout (default: guessed from SOURCE)",
    )
    parser.add_argument(
        "--problems",
        help="problems report: .csv, .tsv or .parquet (default: <stem>.problems.csv beside -o)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when any file had a problem"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes reading files (default: all CPUs)"
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="SET",
        help="hold the corpus to a label set: 'korean' (the seven emotions, Korean names as "
        "aliases) or a comma list; other labels become unknown-label problems "
        "(default: keep the corpus's own labels)",
    )
    parser.add_argument(
        "--answers",
        metavar="FILE",
        help="label SOURCE, an unlabelled pool manifest, with the answers FILE the labelling "
        "page wrote (each annotator's latest answer, majority wins; ties and clips without "
        "a label are left out and counted)",
    )
    add_no_progress(parser, "--quiet")


#: Problem kinds whose row never reaches the table (the reader skips it); a problem of
#: another kind is dropped too unless its file is in the table (a warning on a kept row).
DROPPING_KINDS = (
    "missing-wav", "missing-json", "broken-json", "unreadable-audio", "empty-audio",
    "unknown-label", "label-mismatch", "empty-text", "missing-field", "duplicate-file",
    "duplicate-id", "unreadable-file", "not-a-file", "tied-answers",
)  # fmt: skip


def dropped_note(result, problems_path: Path) -> str:
    """``; N rows dropped (kind n, ...): see PROBLEMS`` for the rows of the source that
    are not in the table, or '' when none is."""
    from emofuse.corpus.joined import ANSWER_FILE_KINDS

    problems = result.problems
    if not len(problems):
        return ""
    kinds = problems["reason"].astype(str).str.split(":").str[0].str.strip()
    in_table = problems["file"].astype(str).isin(set(result.table["audio"].astype(str)))
    dropped = (kinds.isin(DROPPING_KINDS) | ~in_table) & ~kinds.isin(ANSWER_FILE_KINDS)
    if not dropped.any():
        return ""
    counts = kinds[dropped].value_counts()
    why = ", ".join(f"{kind} {n}" for kind, n in counts.items())
    n = int(dropped.sum())
    return f"; {n} row{'s' if n != 1 else ''} dropped ({why}): see {problems_path}"


def run(args: argparse.Namespace) -> int:
    from emofuse.cli import CommandError
    from emofuse.corpus import CorpusError, read_corpus, write_table

    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    output = Path(args.output)
    default_problems = output.with_name(f"{output.stem}.problems.csv")
    problems_path = Path(args.problems) if args.problems else default_problems
    check_table_output(output)
    try:  # the problems report: .csv, .tsv or .parquet, as its extension says
        table_format(problems_path)
    except TableFormatError as err:
        raise CommandError(f"--problems {err}") from None
    check_output_paths([args.source, *filter(None, [args.answers])], [output, problems_path])
    try:
        if args.answers:
            result = _joined(args)
        else:
            result = read_corpus(
                args.source,
                layout=args.layout,
                workers=args.workers,
                progress=not args.no_progress,
                labels=args.labels,
            )
    except (CorpusError, FileNotFoundError, NotADirectoryError) as err:
        raise CommandError(str(err)) from err

    if len(result.problems):
        problems_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            write_whole(problems_path) as partial,
            TableWriter(partial, table_format(problems_path)) as writer,
        ):
            writer.write(result.problems)
    elif not args.problems and default_problems.exists():
        default_problems.unlink()  # a stale report from an earlier scan would mislead
    print(result.summary())
    if len(result.problems):
        print(f"problems report: {problems_path}")
    if not len(result.table):
        raise CommandError(f"{args.source}: no usable clips; nothing written to {output}")
    write_table(result.table, output, result.labels)
    print(f"wrote {output}: {len(result.table)} utterances{dropped_note(result, problems_path)}")
    if args.strict and len(result.problems):
        print(f"--strict: {len(result.problems)} problems", flush=True)
        return 1
    return 0


def _joined(args: argparse.Namespace):
    """The pool at ``args.source`` labelled by ``args.answers`` (a manifest only)."""
    from emofuse.cli import CommandError
    from emofuse.corpus.detect import finish_scan
    from emofuse.corpus.joined import join_answers
    from emofuse.corpus.pool import read_pool

    if args.layout not in ("auto", "manifest"):
        raise CommandError(f"--answers labels a pool manifest, not a {args.layout} folder")
    progress = not args.no_progress
    pool = read_pool(args.source, progress=progress, workers=args.workers)
    result = join_answers(pool, args.answers)
    return finish_scan(result, labels=args.labels, workers=args.workers, progress=progress)
