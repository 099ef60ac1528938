"""`read_corpus`: one entry point for every layout, with the layout guessed from the
source when not given."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emofuse.corpus.scan import CorpusError
from emofuse.corpus.table import PROBLEM_COLUMNS, ScanResult
from emofuse.labels import KOREAN_EMOTIONS, LabelSet

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
    ``unknown-label`` problems. By default a corpus keeps its own labels.
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
    return result if labels is None else restrict_labels(result, labels)


def parse_label_set(labels: LabelSet | Sequence[str] | str) -> LabelSet:
    """``"korean"`` -> the seven emotions; ``"a,b,c"`` or a list -> exactly those."""
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        if labels.strip().casefold() in ("korean", "korean7", "aihub466"):
            return KOREAN_EMOTIONS
        labels = labels.split(",")
    names = tuple(dict.fromkeys(n.strip() for n in labels if n.strip()))
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
