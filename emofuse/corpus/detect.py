"""`read_corpus`: one entry point for every layout, with the layout guessed from the
source when not given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emofuse.corpus.scan import CorpusError
from emofuse.corpus.table import PROBLEM_COLUMNS, ScanResult
from emofuse.labels import KOREAN_EMOTIONS, LabelSet, label_key

LAYOUTS = ("aihub466", "flat", "manifest")


def detect_layout(source: str | Path) -> str:
    """``manifest`` for a .csv/.tsv/.jsonl file, ``aihub466`` for a folder with
    `원천데이터`/`라벨링데이터` folders up to three levels down, ``flat`` for a tree of
    JSON files beside WAVs; raises :class:`CorpusError` when none fits."""
    from emofuse.corpus.aihub466 import looks_like_aihub466
    from emofuse.corpus.flat import looks_like_flat
    from emofuse.corpus.manifest import MANIFEST_SUFFIXES

    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest"
        raise CorpusError(
            f"{path}: a file, but not a manifest ({', '.join(MANIFEST_SUFFIXES)}); "
            "point at a corpus folder or a manifest"
        )
    if looks_like_aihub466(path.absolute()):
        return "aihub466"
    if looks_like_flat(path):
        return "flat"
    raise CorpusError(
        f"{path}: cannot tell the corpus layout: no '원천데이터'/'라벨링데이터' folders within "
        "3 levels (AI-Hub dataset 466) and no JSON files beside WAVs (flat); for any other "
        "corpus write a manifest (CSV/TSV/JSONL with audio, text, label columns)"
    )


def read_corpus(
    source: str | Path,
    *,
    layout: str = "auto",
    workers: int | None = None,
    progress: bool = True,
    labels: LabelSet | Sequence[str] | str | None = None,
) -> ScanResult:
    """Scan a corpus into the utterance table plus a problems report.

    ``layout``: ``auto`` (see :func:`detect_layout`), ``aihub466``, ``flat`` or
    ``manifest``. ``workers``: processes reading headers (default: all CPUs).
    ``labels``: the label set the corpus must use (``"korean"`` for the seven emotions,
    a list of names, or a :class:`LabelSet`); rows with any other label become
    ``unknown-label`` problems. By default a corpus keeps its own labels, with spellings
    that differ only in case, spacing or Unicode form folded into one
    (:func:`emofuse.labels.fold_labels`, said in a note). Rows that share their audio
    are reported (:func:`with_duplicate_audio`).
    """
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "aihub466":
        from emofuse.corpus.aihub466 import read_aihub466 as reader
    elif layout == "flat":
        from emofuse.corpus.flat import read_flat as reader
    elif layout == "manifest":
        from emofuse.corpus.manifest import read_manifest as reader
    else:
        raise ValueError(f"unknown layout {layout!r}; expected auto or one of {', '.join(LAYOUTS)}")
    result = reader(source, workers=workers, progress=progress)
    return finish_scan(result, labels=labels, workers=workers, progress=progress)


def finish_scan(
    result: ScanResult,
    *,
    labels: LabelSet | Sequence[str] | str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ScanResult:
    """What every scan gets after its reader (:func:`read_corpus`): held to ``labels``
    when given (:func:`restrict_labels`), then its duplicate audio reported."""
    if labels is not None:
        result = restrict_labels(result, labels)
    return with_duplicate_audio(result, workers=workers, progress=progress)


def with_duplicate_audio(
    result: ScanResult, *, workers: int | None = None, progress: bool = True
) -> ScanResult:
    """``result`` with its duplicate audio reported (:mod:`emofuse.corpus.duplicates`):
    ``duplicate-audio`` problems, the ``audio_group`` column and a note; unchanged when
    no two rows share their audio."""
    from emofuse.corpus.duplicates import AUDIO_GROUP, duplicate_audio

    group, problems = duplicate_audio(result.table, workers=workers, progress=progress)
    if group is None:
        return result
    table = result.table.assign(**{AUDIO_GROUP: group})
    rows = int((group != "").sum())
    note = (
        f"{rows} rows share their audio with another row ({group[group != ''].nunique()} "
        f"groups, duplicate-audio problems): all kept; the {AUDIO_GROUP!r} column names "
        "each group, and every split keeps a group in one part"
    )
    found = pd.DataFrame(problems, columns=list(PROBLEM_COLUMNS))
    return ScanResult(
        table=table,
        problems=pd.concat([result.problems, found], ignore_index=True),
        labels=result.labels,
        notes=[*result.notes, note],
    )


def parse_label_set(labels: LabelSet | Sequence[str] | str) -> LabelSet:
    """``"korean"`` -> the seven emotions; ``"a,b,c"`` or a list -> exactly those."""
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        if labels.strip().casefold() in ("korean", "korean7", "aihub466"):
            return KOREAN_EMOTIONS
        labels = labels.split(",")
    # One name per class (the first spelling): names differing only in case, spacing or
    # Unicode form are one label.
    first: dict[str, str] = {}
    for name in labels:
        if name.strip():
            first.setdefault(label_key(name), name.strip())
    names = tuple(first.values())
    if not names:
        raise CorpusError("an empty label set: name at least one label")
    return LabelSet(names=names)


def restrict_labels(result: ScanResult, labels: LabelSet | Sequence[str] | str) -> ScanResult:
    """Keep the rows whose label is in ``labels`` (canonical names); report the rest."""
    label_set = parse_label_set(labels)
    table = result.table
    known = table["label"].map(lambda lab: lab in label_set)
    dropped = table[~known]
    problems = pd.DataFrame(
        {
            "file": dropped["audio"],
            "reason": [
                f"unknown-label: {lab!r} is not one of {', '.join(label_set.names)}"
                for lab in dropped["label"]
            ],
        },
        columns=list(PROBLEM_COLUMNS),
    )
    kept = table[known].copy()
    kept["label"] = kept["label"].map(label_set.canonical)
    present = set(kept["label"])
    return ScanResult(
        table=kept.reset_index(drop=True),
        problems=pd.concat([result.problems, problems], ignore_index=True),
        labels=[name for name in label_set.names if name in present],
        notes=[*result.notes, f"label set restricted to {', '.join(label_set.names)}"],
    )
