"""Reader for a generic manifest: a CSV, TSV or JSONL file with one row per clip.

Columns (case-insensitive; the first alias present wins, and the result says which):

- `audio` (or path, file, wav, filename, …): relative to the manifest's folder, or absolute
- `label` (or emotion, class): the Korean seven (English or Korean names) are mapped to
  canonical names; any other label set is kept as the corpus spells it
- `text` (or transcript, sentence, …): optional as a column; if present, an empty cell
  is an `empty-text` problem
- optional `speaker` (default ''), `id` (default: the file stem, made unique), `script`
  (default: a hash of the normalised text, so one sentence = one script), `split`.

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
from pathlib import Path

import pandas as pd

from emofuse.corpus.delimited import explain, read_delimited
from emofuse.corpus.fields import korean_label, split_name, text_script_id
from emofuse.corpus.files import Problem, audio_duration
from emofuse.corpus.rows import build_result, unique_ids
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


def read_manifest(
    path: str | Path, *, workers: int | None = None, progress: bool = True
) -> ScanResult:
    """Read a CSV/TSV/JSONL manifest; durations come from the audio files' headers."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise CorpusError(f"{path}: no such manifest file")
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise CorpusError(f"{path}: a manifest must be {', '.join(MANIFEST_SUFFIXES)}")
    frame, lines, problems = _load_records(path)
    if not len(frame.columns):
        if problems:  # a JSONL manifest with no readable line
            return build_result([], problems)
        raise CorpusError(f"{path}: the manifest is empty")
    columns = resolve_columns(list(frame.columns))
    missing = [c for c in REQUIRED if c not in columns]
    if not any(c in columns for c in CONTENT):
        missing = list(CONTENT) + missing
    if missing:
        raise CorpusError(
            f"{path}: no {' or '.join(missing)} column; found {list(frame.columns)}; accepted: "
            + "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        )

    notes = []
    renamed = [f"{t} <- {c!r}" for t, c in columns.items() if c != t]
    if renamed:
        notes.append(f"manifest columns used: {', '.join(renamed)}")
    has_text = "text" in columns
    has_audio = "audio" in columns
    if not has_text:
        notes.append("the manifest has no text column: text left empty")
    if not has_audio:
        notes.append(
            "text-only corpus: the manifest has no audio column, so audio is left empty and "
            "there are no durations (train and compare with --modality text)"
        )
    if "script" not in columns and has_text:
        notes.append("no script column: script = a hash of the normalised text")

    base = path.parent
    # Plain lists: indexing a Series per cell costs ~100x more over 450k rows.
    cell = {t: [str(v).strip() for v in frame[c].tolist()] for t, c in columns.items()}

    keep: list[int] = []
    audio_paths: list[str] = []  # "" for a row without audio
    for i, line in enumerate(lines):
        where = f"{path}:{line}"
        raw_audio = cell["audio"][i] if has_audio else ""
        if has_audio and not raw_audio and not (has_text and cell["text"][i]):
            problems.append((where, f"missing-field: empty {columns['audio']!r}"))
            continue
        audio = os.path.abspath(base / Path(raw_audio).expanduser()) if raw_audio else ""
        reasons = []
        if not cell["label"][i]:
            reasons.append(f"missing-field: empty {columns['label']!r} (line {line})")
        if has_text and not cell["text"][i]:
            reasons.append(f"empty-text: empty {columns['text']!r} (line {line})")
        if reasons:
            problems += [(audio or where, r) for r in reasons]
            continue
        keep.append(i)
        audio_paths.append(audio)

    durations_list, audio_problems = run_chunked(
        _header_chunk,
        sorted(set(audio_paths) - {""}),
        workers=workers,
        progress=progress,
        desc="reading headers",
    )
    durations = dict(durations_list)
    durations[""] = (float("nan"), "")  # a text-only row: no audio, no duration
    problems += audio_problems

    raw_labels = {cell["label"][i] for i in keep}
    korean = all(korean_label(lab) for lab in raw_labels)
    if not korean and raw_labels:
        notes.append(
            "labels are not the Korean seven: kept as the corpus names them "
            "(pass labels='korean' / `--labels korean` to hold them to the seven)"
        )

    rows = []
    candidates = []
    seen_ids: dict[str, int] = {}
    unknown_splits: set[str] = set()
    for i, audio in zip(keep, audio_paths, strict=True):
        if audio not in durations:
            continue  # its audio problem is already reported
        line = lines[i]
        raw_label = cell["label"][i]
        label = korean_label(raw_label) if korean else unicodedata.normalize("NFC", raw_label)
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
        given_id = cell["id"][i] if "id" in cell else ""
        if given_id:
            if given_id in seen_ids:
                problems.append(
                    (
                        audio or f"{path}:{line}",
                        f"duplicate-id: {given_id!r} on line {line} and line {seen_ids[given_id]}",
                    )
                )
                continue
            seen_ids[given_id] = line
            candidates.append((given_id,))
        elif not audio:
            candidates.append((f"{path.stem}-{line}", f"{path.stem}-{line}"))
        else:
            rel = os.path.relpath(audio, base)
            candidates.append((Path(audio).stem, Path(rel).with_suffix("").as_posix()))
        duration, on_disk = durations[audio]
        rows.append([None, on_disk, text, label, speaker, script, duration, split])
    if unknown_splits:
        notes.append(f"split values kept as given: {', '.join(sorted(unknown_splits))}")
    without_audio = sum(1 for row in rows if not row[1])
    if has_audio and without_audio:
        notes.append(mixed_audio_note(without_audio, len(rows)))

    # Ids the manifest gives are kept as they are; generated ones work around them.
    given = {c[0] for c in candidates if len(c) == 1}
    generated = iter(unique_ids([c for c in candidates if len(c) > 1], reserved=given))
    for row, cand in zip(rows, candidates, strict=True):
        row[0] = cand[0] if len(cand) == 1 else next(generated)
    labels = label_order(row[3] for row in rows)
    rows = [tuple(r) for r in rows]
    return build_result(rows, problems, labels=labels, notes=notes, sort=False)
