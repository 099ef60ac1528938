"""Reader for the flat variant of the Korean corpus used in the paper: each clip is a
`PSB_00001.wav` with its label file `PSB_00001.json` beside it, anywhere in one tree.

From the file name: speaker = the code before the first `_` (`PSB`), script = the
trailing number (`00001`). From the JSON, the first of these that is present:

- label: `화자정보.Emotion`, then top-level `emotion`, then `label` (Korean or English
  names of the seven emotions);
- text: `전사정보.OrgLabelText`, then top-level `text`.

A split folder on the way down (`Training/`, `val/`, `test/` …) sets `source_split`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from emofuse.corpus.fields import first_field, korean_label, split_from_parts
from emofuse.corpus.files import Problem, read_label_pair, walk_files
from emofuse.corpus.rows import Row, paired_row
from emofuse.corpus.scan import ChunkResult, CorpusError, corpus_dir, progress_bar, scan_pairs
from emofuse.corpus.table import ScanResult
from emofuse.labels import KOREAN_EMOTIONS

LABEL_FIELDS = ("화자정보.Emotion", "emotion", "label")
TEXT_FIELDS = ("전사정보.OrgLabelText", "text")


def looks_like_flat(root: Path, *, max_files: int = 5000) -> bool:
    """True when some JSON file in the tree has a WAV of the same stem beside it."""
    seen = 0
    for _dir, _subdirs, files in os.walk(root):
        stems = {os.path.splitext(f)[0] for f in files if f.lower().endswith(".wav")}
        if any(f.lower().endswith(".json") and os.path.splitext(f)[0] in stems for f in files):
            return True
        seen += len(files)
        if seen > max_files:
            return False
    return False


def _scan_one(item: tuple[str, str, str]) -> ChunkResult:
    wav, json_path, split = item
    stem = os.path.splitext(os.path.basename(wav))[0]
    obj, duration, problems = read_label_pair(wav, json_path)
    if obj is None:
        return [], problems

    _, text = first_field(obj, TEXT_FIELDS)
    if text is None:
        problems.append((json_path, f"missing-field: none of {', '.join(TEXT_FIELDS)}"))
    elif not str(text).strip():
        problems.append((json_path, "empty-text: the transcript is empty"))
    label_field, raw_label = first_field(obj, LABEL_FIELDS)
    label = None
    if raw_label is None or not str(raw_label).strip():
        problems.append((json_path, f"missing-field: none of {', '.join(LABEL_FIELDS)}"))
    else:
        label = korean_label(raw_label)
        if label is None:
            problems.append(
                (
                    json_path,
                    f"unknown-label: '{label_field}' is {raw_label!r}; expected one of "
                    f"{', '.join(KOREAN_EMOTIONS.names)} (or the Korean names)",
                )
            )
    if problems:
        return [], problems

    speaker = stem.split("_", 1)[0] if "_" in stem else ""
    return [paired_row(stem, wav, text, label, speaker, duration, split)], []


def read_flat(root: str | Path, *, workers: int | None = None, progress: bool = True) -> ScanResult:
    """Scan a tree of WAV + JSON pairs; unpaired and bad files become problem rows."""
    root = corpus_dir(root, "a folder of WAV + JSON pairs")
    wavs: dict[str, str] = {}
    jsons: dict[str, str] = {}
    problems: list[Problem] = []
    with progress_bar(total=None, desc="listing", progress=progress) as bar:
        for path in walk_files(root, {".wav", ".json"}, bar=bar):
            base, suffix = os.path.splitext(path)
            found = wavs if suffix.lower() == ".wav" else jsons
            if base in found:  # x.wav beside x.WAV
                problems.append((path, f"duplicate-file: the same clip as {found[base]}"))
            else:
                found[base] = path
    if not wavs and not jsons:
        raise CorpusError(f"{root}: no .wav or .json files in the tree")

    items = []
    for base, wav in wavs.items():
        if base in jsons:
            rel_dirs = os.path.relpath(os.path.dirname(wav), root).split(os.sep)
            split = split_from_parts([root.name, *rel_dirs])
            items.append((wav, jsons[base], split))
        else:
            problems.append((wav, f"missing-json: no {Path(base).name}.json beside it"))
    problems += [
        (j, f"missing-wav: no {Path(base).name}.wav beside it")
        for base, j in jsons.items()
        if base not in wavs
    ]

    def fallback_ids(rows: Sequence[Row], i: int) -> tuple[str]:
        return (Path(os.path.relpath(rows[i][1], root)).with_suffix("").as_posix(),)

    return scan_pairs(_scan_one, items, problems, fallback_ids, workers=workers, progress=progress)
