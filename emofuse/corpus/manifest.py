"""Reader for a generic manifest: a CSV, TSV or JSONL file with one row per clip.

Columns (case-insensitive; the first alias present wins, and the result says which):

- `audio` (or path, file, wav, filename, …): relative to the manifest's folder, or absolute
- `label` (or emotion, class): the Korean seven (English or Korean names) are mapped to
  canonical names; any other label set is kept as the corpus spells it
- `text` (or transcript, sentence, …): optional as a column; if present, an empty cell
  is an `empty-text` problem
- optional `speaker` (default ''), `id` (default: the file stem; where stems collide, the
  path below the manifest's folder, or for a file elsewhere the shortest end of its path
  that is unique, e.g. `emodb/wav/03a01Fa`), `script` (default: a hash of the normalised
  text, so one sentence = one script), `split`.

A manifest needs `label` and at least one of `audio` and `text`. Without an `audio`
column it is a *text-only* corpus: every row has an empty `audio` and no duration (NaN),
its id defaults to ``<manifest stem>-<line>``, and an empty text is an `empty-text`
problem. In a manifest with both columns, a row whose audio cell is empty but whose text
is not is kept as a text-only row, and the summary notes the mixed table
(:mod:`emofuse.corpus.text_only`).
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emofuse.corpus.delimited import explain, read_delimited
from emofuse.corpus.fields import korean_label, nfc, split_name, text_script_id
from emofuse.corpus.files import Problem, audio_duration
from emofuse.corpus.rows import Row, build_result, path_id_candidates, unique_ids
from emofuse.corpus.scan import ChunkResult, CorpusError, run_chunked
from emofuse.corpus.table import ScanResult
from emofuse.corpus.text_only import mixed_audio_note
from emofuse.labels import label_order

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")

#: Table column -> accepted manifest column names, preferred first.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "audio": ("audio", "path", "file", "wav", "audio_path", "wav_path", "file_path",
              "filepath", "filename", "audio_file"),
    "label": ("label", "emotion", "class", "category"),
    "text": ("text", "transcript", "sentence", "transcription", "utterance"),
    "speaker": ("speaker", "speaker_id", "spk", "spk_id"),
    "id": ("id", "utt_id", "utterance_id", "uid"),
    "script": ("script", "script_id", "sentence_id"),
    "split": ("split", "source_split", "subset", "set", "partition"),
}  # fmt: skip
REQUIRED = ("label",)
#: A manifest needs at least one of these (with neither there is nothing to learn from).
CONTENT = ("audio", "text")


def _norm_column(name: str) -> str:
    return str(name).strip().casefold().replace("-", "_").replace(" ", "_")


def resolve_columns(columns: list[str]) -> dict[str, str]:
    """Map table columns (audio, label, text, …) to the manifest's own column names."""
    present = {_norm_column(c): c for c in reversed(columns)}  # first spelling wins
    found: dict[str, str] = {}
    for target, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in present and present[alias] not in found.values():
                found[target] = present[alias]
                break
    return found


def _load_records(path: Path) -> tuple[pd.DataFrame, list[int], list[Problem]]:
    """The manifest as strings, the line number of each record, and unparsable lines."""
    problems: list[Problem] = []
    if path.suffix.lower() == ".parquet":
        frame = _load_parquet(path)
        return frame, list(range(1, len(frame) + 1)), problems  # "line" = row number
    if path.suffix.lower() == ".jsonl":
        records: list[dict] = []
        lines: list[int] = []
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise explain(path, "", err) from err
        # split("\n"), not splitlines(): a JSON string may hold U+2028 and the like.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append((f"{path}:{number}", f"broken-json: {err}"))
                continue
            if not isinstance(obj, dict):
                problems.append((f"{path}:{number}", "broken-json: not a JSON object"))
                continue
            records.append({k: "" if v is None else str(v) for k, v in obj.items()})
            lines.append(number)
        frame = pd.DataFrame.from_records(records).fillna("") if records else pd.DataFrame()
        return frame, lines, problems
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:  # a wrong encoding or separator is named, with the fix (corpus/delimited.py)
        frame = read_delimited(path, sep)
    except pd.errors.EmptyDataError as err:
        kind = "TSV" if sep == "\t" else "CSV"
        raise CorpusError(f"{path}: cannot parse as {kind}: {err}") from err
    return frame, [i + 2 for i in range(len(frame))], problems  # line 1 is the header


def _load_parquet(path: Path) -> pd.DataFrame:
    """A Parquet manifest (e.g. a table `prepare` wrote) as strings; a missing value
    reads as an empty cell, as in a CSV."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises its own kinds for a file that is not Parquet
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorpusError(f"{path}: cannot read it as Parquet ({detail})") from err
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _other_normal_form(path: str) -> str | None:
    """The path in the other Unicode form (NFC <-> NFD) when only that one exists: a
    manifest typed in composed Hangul over files unzipped from macOS (decomposed)."""
    if path.isascii():
        return None
    for form in ("NFD", "NFC"):
        other = unicodedata.normalize(form, path)
        if other != path and os.path.exists(other):
            return other
    return None


def _header_chunk(paths: list[str]) -> ChunkResult:
    """(path as given, duration, path on disk) per readable file, and the problems."""
    durations: list = []
    problems: list[Problem] = []
    for path in paths:
        duration, problem = audio_duration(path)
        real = path
        if problem and problem[1].startswith("missing-wav") and (alt := _other_normal_form(path)):
            real = alt
            duration, problem = audio_duration(real)
        if problem:
            problems.append(problem)
        else:
            durations.append((path, (duration, real)))
    return durations, problems


@dataclass
class ManifestRows:
    """What :func:`read_manifest_rows` makes of a manifest: the rows that pass its checks,
    each with the record it came from, and everything said about the rest."""

    rows: list[Row]
    #: ``rows[i]`` came from ``frame.iloc[records[i]]``
    records: list[int]
    #: every record of the manifest, every column as spelled there, as strings
    frame: pd.DataFrame
    #: table column (audio, label, …) -> the manifest's column it was read from
    columns: dict[str, str]
    problems: list[Problem]
    notes: list[str]
    #: class order of the labels present
    labels: list[str]


def read_manifest(
    path: str | Path, *, workers: int | None = None, progress: bool = True
) -> ScanResult:
    """Read a CSV/TSV/JSONL manifest; durations come from the audio files' headers."""
    found = read_manifest_rows(path, workers=workers, progress=progress)
    return build_result(
        found.rows, found.problems, labels=found.labels, notes=found.notes, sort=False
    )


def manifest_path(path: str | Path, suffixes: tuple[str, ...] = MANIFEST_SUFFIXES) -> Path:
    """``path`` as an absolute manifest file, or a :class:`CorpusError` saying why not."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise CorpusError(f"{path}: no such manifest file")
    if path.suffix.lower() not in suffixes:
        raise CorpusError(f"{path}: a manifest must be {', '.join(suffixes)}")
    return path


def read_manifest_rows(
    path: str | Path,
    *,
    labelled: bool = True,
    suffixes: tuple[str, ...] = MANIFEST_SUFFIXES,
    workers: int | None = None,
    progress: bool = True,
) -> ManifestRows:
    """The rows of the manifest at ``path`` (one of ``suffixes``; ``.parquet`` is read
    too where a caller allows it).

    With ``labelled=False`` (an unlabelled pool, :mod:`emofuse.corpus.pool`) the label
    column may be absent and a row with a blank label is kept, label ``""``; every other
    rule is the same. Ids never depend on labels, on files on disk or on which rows pass:
    they are made over every record (:func:`record_ids`), so a pool and the manifest
    prepared after labelling give each clip the same id."""
    path = manifest_path(path, suffixes)
    frame, lines, problems = _load_records(path)
    if not len(frame.columns):
        if problems:  # a JSONL manifest with no readable line
            return ManifestRows([], [], frame, {}, problems, [], [])
        raise CorpusError(f"{path}: the manifest is empty")
    columns = resolve_columns(list(frame.columns))
    missing = [c for c in REQUIRED if c not in columns] if labelled else []
    if not any(c in columns for c in CONTENT):
        missing = list(CONTENT) + missing
    if missing:
        raise CorpusError(
            f"{path}: no {' or '.join(missing)} column; found {list(frame.columns)}; accepted: "
            + "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        )
    notes = _column_notes(columns)
    has_text = "text" in columns
    has_audio = "audio" in columns
    # Plain lists: indexing a Series per cell costs ~100x more over 450k rows.
    cell = {t: [str(v).strip() for v in frame[c].tolist()] for t, c in columns.items()}
    base = path.parent
    audio_of = [
        os.path.abspath(base / Path(raw).expanduser()) if raw else ""
        for raw in (cell["audio"] if has_audio else [""] * len(lines))
    ]
    ids = record_ids(path, lines, audio_of, cell.get("id"))
    label_of = cell.get("label", [""] * len(lines))

    keep: list[int] = []
    for i, line in enumerate(lines):
        where = f"{path}:{line}"
        audio = audio_of[i]
        if has_audio and not audio and not (has_text and cell["text"][i]):
            problems.append((where, f"missing-field: empty {columns['audio']!r}"))
            continue
        reasons = []
        if labelled and not label_of[i]:
            reasons.append(f"missing-field: empty {columns['label']!r} (line {line})")
        if has_text and not cell["text"][i]:
            reasons.append(f"empty-text: empty {columns['text']!r} (line {line})")
        if reasons:
            problems += [(audio or where, r) for r in reasons]
            continue
        keep.append(i)

    durations_list, audio_problems = run_chunked(
        _header_chunk,
        sorted({audio_of[i] for i in keep} - {""}),
        workers=workers,
        progress=progress,
        desc="reading headers",
    )
    durations = dict(durations_list)
    durations[""] = (float("nan"), "")  # a text-only row: no audio, no duration
    problems += audio_problems

    raw_labels = {label_of[i] for i in keep} - {""}
    korean = all(korean_label(lab) for lab in raw_labels)
    if not korean and raw_labels:
        notes.append(
            "labels are not the Korean seven: kept as the corpus names them "
            "(`--labels korean` holds them to the seven; labels='korean' in Python)"
        )

    rows: list[Row] = []
    records: list[int] = []
    seen_ids: dict[str, int] = {}
    unknown_splits: set[str] = set()
    for i in keep:
        audio = audio_of[i]
        if audio not in durations:
            continue  # its audio problem is already reported
        line = lines[i]
        raw_label = label_of[i]
        label = korean_label(raw_label) if korean and raw_label else nfc(raw_label)
        text = cell["text"][i] if has_text else ""
        speaker = cell["speaker"][i] if "speaker" in cell else ""
        script = cell["script"][i] if "script" in cell else ""
        script = script or text_script_id(text)
        split = ""
        if "split" in cell and cell["split"][i]:
            raw_split = cell["split"][i]
            split = split_name(raw_split) or raw_split.casefold()
            if not split_name(raw_split):
                unknown_splits.add(raw_split)
        if "id" in cell and cell["id"][i]:
            if ids[i] in seen_ids:
                problems.append(
                    (
                        audio or f"{path}:{line}",
                        f"duplicate-id: {ids[i]!r} on line {line} and line {seen_ids[ids[i]]}",
                    )
                )
                continue
            seen_ids[ids[i]] = line
        duration, on_disk = durations[audio]
        rows.append((ids[i], on_disk, text, label, speaker, script, duration, split))
        records.append(i)
    if unknown_splits:
        notes.append(f"split values kept as given: {', '.join(sorted(unknown_splits))}")
    without_audio = sum(1 for row in rows if not row[1])
    if has_audio and without_audio:
        notes.append(mixed_audio_note(without_audio, len(rows)))
    labels = label_order(row[3] for row in rows if row[3])
    return ManifestRows(rows, records, frame, columns, problems, notes, labels)


def _column_notes(columns: dict[str, str]) -> list[str]:
    """What the reader decided about the manifest's columns, for the summary."""
    notes = []
    renamed = [f"{t} <- {c!r}" for t, c in columns.items() if c != t]
    if renamed:
        notes.append(f"manifest columns used: {', '.join(renamed)}")
    if "text" not in columns:
        notes.append("the manifest has no text column: text left empty")
    if "audio" not in columns:
        notes.append(
            "text-only corpus: the manifest has no audio column, so audio is left empty and "
            "there are no durations (train and compare with --modality text)"
        )
    if "script" not in columns and "text" in columns:
        notes.append("no script column: script = a hash of the normalised text")
    return notes


def record_ids(
    path: Path, lines: list[int], audio_of: list[str], given: list[str] | None
) -> list[str]:
    """One id per record of the manifest at ``path``: the id it gives, kept as it is;
    else the file stem, made unique over the records that need one by the shortest path
    that tells them apart (:func:`~emofuse.corpus.rows.path_id_candidates`; ids the
    manifest gives are never taken); a record without audio gets ``<manifest stem>-<line>``."""
    given = given or [""] * len(lines)
    wanting: list[int] = []
    candidates: list[tuple[str, ...]] = []
    for i, (line, audio) in enumerate(zip(lines, audio_of, strict=True)):
        if given[i]:
            continue
        wanting.append(i)
        if audio:
            candidates.append(path_id_candidates(audio, path.parent))
        else:
            candidates.append((f"{path.stem}-{line}",))
    ids = list(given)
    made = unique_ids(candidates, reserved={g for g in given if g})
    for i, ident in zip(wanting, made, strict=True):
        ids[i] = ident
    return ids
