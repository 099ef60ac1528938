"""`emofuse sample`: N clips per emotion: random, shortest-first, longest-first, diverse
or speaker-balanced.

The paper's sampling recipe plus two selections, printing count and duration per label.
`--order diverse` spreads each emotion's N clips over the speech-vector space (k-center
greedy): it needs `--store DIR`, where the vectors of `--speech SPEC` are computed or
reused; on a text-only corpus (no audio) it reads the text vectors of `--text SPEC`
instead. `--order speaker-balanced` takes the clips round robin over speakers. On a split
table (one with a `part` column, from `emofuse split`) only the train part is sampled;
the val and test rows pass through unchanged, as in the experiment grids."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emofuse.cli import CommandError
from emofuse.cli.common import (
    add_command,
    add_no_progress,
    add_output,
    add_seed,
    check_table_output,
    read_table,
)
from emofuse.cli.paths import check_output_paths
from emofuse.cli.plugins import add_plugin_option, load_plugins

HELP = "take N clips per emotion (random, shortest, longest, diverse or speaker-balanced)"
#: --by: what shortest/longest measures, and the table column it reads.
SORT_KEYS = {"auto": None, "duration": "duration_s", "text": "text_length"}
BY_HELP = (
    "what shortest/longest measures: audio duration or text length; auto (default): "
    "duration, or text length for a table without durations (a text-only corpus)"
)
DIVERSE = "diverse"
SPEAKER_BALANCED = "speaker-balanced"


def _per_label(value: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', not {value!r}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT_UNSUPERVISED
    from emofuse.sampling import ORDERS

    parser = add_command(subparsers, "sample", run, help=HELP, doc=__doc__)
    parser.add_argument("corpus", help="corpus or split table (.parquet or .csv)")
    parser.add_argument(
        "--per-label", type=_per_label, required=True, help="clips per label, or 'all'"
    )
    parser.add_argument(
        "--order",
        choices=ORDERS,
        default="random",
        help=f"{DIVERSE}: spread over the vector space (needs --store); {SPEAKER_BALANCED}: "
        "round robin over speakers (default: random)",
    )
    parser.add_argument("--by", choices=tuple(SORT_KEYS), default="auto", help=BY_HELP)
    parser.add_argument(
        "--dedupe-text", action="store_true", help="keep one clip per normalised sentence first"
    )
    parser.add_argument(
        "--store", type=Path, metavar="DIR", help=f"feature store for --order {DIVERSE}"
    )
    parser.add_argument(
        "--speech",
        metavar="SPEC",
        default=OFFLINE_SPEECH,
        help=f"speech encoder whose vectors --order {DIVERSE} spreads over "
        f"(default {OFFLINE_SPEECH})",
    )
    parser.add_argument(
        "--text",
        metavar="SPEC",
        default=OFFLINE_TEXT_UNSUPERVISED,
        help=f"text encoder for --order {DIVERSE} on a text-only corpus, one that needs no "
        f"labels (default {OFFLINE_TEXT_UNSUPERVISED})",
    )
    add_seed(parser)
    add_no_progress(parser)
    add_plugin_option(parser)
    add_output(parser, "sampled table (.parquet or .csv)")


def run(args: argparse.Namespace) -> int:
    import warnings

    from emofuse.corpus.table import write_table
    from emofuse.sampling import (
        SamplingShortfallWarning,
        has_speakers,
        sample_train_part,
        sampling_summary,
    )

    if args.order == DIVERSE and args.store is None:
        raise CommandError(
            f"--order {DIVERSE} needs vectors to spread over: give --store DIR (where the "
            f"vectors of --speech SPEC, default {args.speech}, are computed or reused)"
        )
    check_table_output(args.output)
    check_output_paths([args.corpus], [args.output])
    if args.store is not None:  # a read-only store that holds every vector still serves
        check_output_paths([args.corpus, args.output], [args.store], writable=False)
    table, labels = read_table(args.corpus)
    if args.order == SPEAKER_BALANCED and not has_speakers(table):
        raise CommandError(
            f"{args.corpus}: --order {SPEAKER_BALANCED} needs speakers, and no row names one "
            "(empty speaker column); use another --order"
        )
    vectors = None
    if args.order == DIVERSE:
        load_plugins(args.plugin)
        table, vectors = _diverse_vectors(table, args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingShortfallWarning)
        try:
            sampled = sample_train_part(
                table,
                args.per_label,
                order=args.order,
                by=SORT_KEYS[args.by],
                dedupe_text=args.dedupe_text,
                seed=args.seed,
                vectors=vectors,
            )
        except ValueError as err:
            raise CommandError(f"{args.corpus}: {err}") from None
    for warning in caught:
        print(f"warning: {warning.message}")
    if args.dedupe_text:
        print(
            f"de-duplicated text: {sampled.attrs['rows_before_dedupe']} -> "
            f"{sampled.attrs['rows_after_dedupe']} clips (one per normalised sentence)"
        )
    train = sampled
    if "part" in sampled.columns:
        train = sampled[sampled["part"].astype(str) == "train"]
        print(
            f"split table: sampled the train part; {len(sampled) - len(train)} clips of the "
            "other parts passed through unchanged"
        )
    print(sampling_summary(train).to_string(float_format=lambda x: f"{x:.2f}"))
    hours = train["duration_s"].sum() / 3600
    print(f"total: {len(train)} clips, {hours:.2f} h")
    path = write_table(sampled, args.output, labels)
    print(f"wrote {path}")
    return 0


def _diverse_vectors(table: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """The table (less pool rows without a vector) and the vectors ``diverse`` spreads
    over, aligned with it: speech vectors of ``--speech``, or on a text-only corpus the
    text vectors of ``--text`` (a fitted encoder learns from the rows being sampled:
    the train part of a split table, else the whole table). Only the rows being sampled
    are encoded; the other parts' rows get zeros, which sampling never reads."""
    import numpy as np

    from emofuse.corpus.text_only import audio_status, mixed_audio_note
    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStore, FeatureStoreError, extract_features
    from emofuse.modalities import SPEECH, TEXT

    pool = np.ones(len(table), dtype=bool)
    if "part" in table.columns:
        pool = table["part"].astype(str).to_numpy() == "train"
    rows = table.loc[pool]
    status = audio_status(rows)
    if status == "mixed":
        without = int((rows["audio"].fillna("").astype(str).str.strip() == "").sum())
        raise CommandError(
            f"{args.corpus}: {mixed_audio_note(without, len(rows))}; --order {DIVERSE} "
            "reads a speech vector of every clip it chooses from: sample the rows with "
            "audio, or use another --order"
        )
    modality, spec = (TEXT, args.text) if status == "text-only" else (SPEECH, args.speech)
    if modality == TEXT and _learns_from_labels(spec):
        raise CommandError(
            f"--text {spec}: learns from the labels, so its vectors would already know the "
            f"emotions being sampled; --order {DIVERSE} needs one that does not (e.g. the "
            "default, kiwi-tfidf)"
        )
    store = FeatureStore(args.store)
    try:
        encoder = extract_features(
            rows,
            store=store,
            **{modality: spec},
            fit_table=rows if modality == TEXT else None,
            progress=not args.no_progress,
        )[modality]
    except (FeatureStoreError, EncoderError, ValueError) as err:
        raise CommandError(f"--{modality} {spec}: {err}") from None
    if modality == TEXT:
        print(f"text-only corpus: --order {DIVERSE} spreads over {spec} text vectors")
    ok = store.available(rows, encoder)
    if not ok.all():
        print(
            f"note: {int((~ok).sum())} clips have no {spec} vector (extraction failed); "
            f"--order {DIVERSE} leaves them out"
        )
        keep = ~pool
        keep[np.flatnonzero(pool)[ok]] = True
        table, pool, rows = table.loc[keep].reset_index(drop=True), pool[keep], rows.loc[ok]
    vectors = np.zeros((len(table), encoder.dim), dtype=np.float32)
    vectors[pool] = store.get(rows, encoder)
    return table, vectors


def _learns_from_labels(spec: str) -> bool:
    from emofuse.encoders import build_encoder
    from emofuse.encoders.base import EncoderError

    try:
        return bool(build_encoder(spec, "text").needs_labels)
    except EncoderError as err:
        raise CommandError(f"--text {spec}: {err}") from None
