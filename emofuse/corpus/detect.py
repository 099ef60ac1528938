"""`read_corpus`: one entry point for every layout, with the layout guessed from the
source when not given."""

from __future__ import annotations

from pathlib import Path

from emofuse.corpus.scan import CorpusError
from emofuse.corpus.table import ScanResult

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
) -> ScanResult:
    """Scan a corpus into the utterance table plus a problems report.

    ``layout``: ``auto`` (see :func:`detect_layout`), ``aihub466``, ``flat`` or
    ``manifest``. ``workers``: processes reading headers (default: all CPUs).
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
    return reader(source, workers=workers, progress=progress)
