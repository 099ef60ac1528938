"""What every corpus reader shares: listing files, reading label JSON and audio headers,
and running the per-file work in parallel chunks with a progress bar.

A corpus may hold ~450k clips, so the per-file work (one JSON parse, one audio header
read) runs in worker processes over chunks of files: no process or task per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from emofuse.corpus.table import COLUMNS, PROBLEM_COLUMNS, ScanResult, empty_table
from emofuse.labels import KOREAN_EMOTIONS
from emofuse.text import normalize_text
from emofuse.workers import with_parent_watch

#: One table row, values in :data:`COLUMNS` order.
Row = tuple[str, str, str, str, str, str, float, str]
#: One problem: (file, "<kind>: <detail>").
Problem = tuple[str, str]
#: What the work on one chunk of files returns.
ChunkResult = tuple[list[Row], list[Problem]]

#: Files per chunk handed to a worker: large enough that process hand-off costs little
#: next to the ~50 µs of work per file, small enough for a lively progress bar.
MAX_CHUNK = 1000
#: Below this many files, starting worker processes costs more than it saves.
MIN_PARALLEL = 200


class CorpusError(ValueError):
    """A corpus that cannot be read at all (as opposed to a bad file inside it)."""


def corpus_dir(root: str | Path, expected: str) -> Path:
    """``root`` as an absolute folder, or a :class:`CorpusError` saying what was expected
    there (e.g. "the dataset-466 folder")."""
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected {expected})")
    return path


# -- small per-file helpers --------------------------------------------------------------


def non_regular_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (after following links):
    "a named pipe", "a socket", "a directory" ...; None for a regular file or a missing one.
    Opening a named pipe blocks until a writer comes, and a device streams without end."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NON_REGULAR if test(mode)), "not a regular file")


def not_a_regular_file(path: str) -> Problem | None:
    """A ``not-a-file`` problem row for a path that is not a regular file (see
    :func:`non_regular_kind`), so a reader skips it without opening it; None otherwise (a
    missing file is the caller's to report in its own words)."""
    kind = non_regular_kind(path)
    return None if kind is None else (path, f"not-a-file: {kind}, skipped")


_NON_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def audio_duration(path: str) -> tuple[float | None, Problem | None]:
    """Duration in seconds from the audio file's header (never decodes the samples).

    Returns ``(duration_s, None)`` or ``(None, (path, reason))`` where the reason's kind
    is ``missing-wav``, ``not-a-file`` (a pipe, socket, device or directory: never
    opened), ``unreadable-audio`` or ``empty-audio`` (no frames).
    """
    import soundfile as sf

    if problem := not_a_regular_file(path):
        return None, problem
    try:
        # Opening a SoundFile reads the header only; it is sf.info() without building
        # the descriptive strings, ~35% faster.
        with sf.SoundFile(path) as f:
            frames, rate = f.frames, f.samplerate
    except Exception as err:  # libsndfile raises several types for bad files
        if not os.path.exists(path):  # libsndfile's own message is just "System error"
            return None, (path, "missing-wav: no such audio file")
        detail = str(err).replace("\n", " ").strip() or type(err).__name__
        detail = detail.replace(f"Error opening {path!r}: ", "")  # the file is in column 1
        return None, (path, f"unreadable-audio: {detail}")
    if frames <= 0 or rate <= 0:
        return None, (path, f"empty-audio: {frames} frames at {rate} Hz")
    return frames / rate, None


def load_json(path: str) -> tuple[dict | None, Problem | None]:
    """Parse a label file; tolerates a UTF-8 byte-order mark and CP949 (both seen in
    AI-Hub releases). Returns ``(object, None)`` or ``(None, problem)``."""
    if problem := not_a_regular_file(path):
        return None, problem
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        return None, (path, f"broken-json: cannot read ({err.strerror or err})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp949")
        except UnicodeDecodeError:
            return None, (path, "broken-json: neither UTF-8 nor CP949 text")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return None, (path, f"broken-json: {err}")
    if not isinstance(obj, dict):
        return None, (path, f"broken-json: top level is a {type(obj).__name__}, not an object")
    return obj, None


def read_label_pair(wav: str, json_path: str) -> tuple[dict | None, float | None, list[Problem]]:
    """A clip's label JSON and audio duration (from the header), and the problems of
    either file: ``(object or None, duration_s or None, problems)``."""
    problems: list[Problem] = []
    obj, problem = load_json(json_path)
    if problem:
        problems.append(problem)
    duration, problem = audio_duration(wav)
    if problem:
        problems.append(problem)
    return obj, duration, problems


def get_field(obj: Any, dotted: str) -> Any:
    """``get_field(d, "전사정보.OrgLabelText")`` -> the nested value, or None."""
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def first_field(obj: dict, names: Sequence[str]) -> tuple[str | None, Any]:
    """The first of ``names`` (dotted paths) present and not None: (name, value)."""
    for name in names:
        value = get_field(obj, name)
        if value is not None:
            return name, value
    return None, None


def nfc(text: str) -> str:
    """Composed Hangul: names from zips made on macOS arrive decomposed (NFD)."""
    return unicodedata.normalize("NFC", text)


# LabelSet.canonical rebuilds its lookup per call; a scan does it 450k times.
_KOREAN_LOOKUP = {name.casefold(): name for name in KOREAN_EMOTIONS.names} | {
    alias.strip().casefold(): name for alias, name in KOREAN_EMOTIONS.aliases.items()
}


def korean_label(raw: object) -> str | None:
    """The canonical name for one of the Korean seven (English or Korean name), else None."""
    return _KOREAN_LOOKUP.get(nfc(str(raw)).strip().casefold())


def text_script_id(text: str) -> str:
    """A stable script id from the sentence itself, for corpora that number no scripts.
    Two readings count as one script when :func:`emofuse.text.normalize_text` (the
    package's one definition of "the same sentence") gives them the same key."""
    norm = normalize_text(text)
    if not norm:
        return ""
    return "t" + hashlib.blake2b(norm.encode("utf-8"), digest_size=6).hexdigest()


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def trailing_number(stem: str) -> str:
    """``"0001_G1A3E1S0C0_ABC_000123"`` -> ``"000123"``; ``""`` when none."""
    match = _TRAILING_NUMBER.search(stem)
    return match.group(1) if match else ""


_SPLITS = {
    "train": "train",
    "training": "train",
    "학습": "train",
    "훈련": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "검증": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "평가": "test",
}
_SPLIT_PREFIX = re.compile(r"^\d+[._\-\s]*")


def split_name(name: str) -> str | None:
    """A corpus split name (``Training``, ``1.Validation``, ``dev``, ``검증``) normalised to
    train / validation / test, or None when ``name`` is not a split name."""
    key = _SPLIT_PREFIX.sub("", name.strip()).casefold()
    return _SPLITS.get(key)


def split_from_parts(parts: Iterable[str]) -> str:
    """The split named by the first directory in ``parts`` that names one, else ''."""
    for part in parts:
        found = split_name(part)
        if found:
            return found
    return ""


# -- listing -------------------------------------------------------------------------------


def walk_files(root: Path, suffixes: set[str], *, bar: Any = None) -> Iterator[str]:
    """Every file under ``root`` whose lower-cased suffix is in ``suffixes``, skipping
    hidden entries and `__MACOSX`; follows directory symlinks (each directory once)."""
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__MACOSX":
                continue  # hidden files, and macOS zip debris (`._x.wav` resource forks)
            try:
                if entry.is_dir():
                    subdirs.append(entry.path)
                    continue
            except OSError:
                continue
            dot = entry.name.rfind(".")
            if dot > 0 and entry.name[dot:].lower() in suffixes:
                yield entry.path
                if bar is not None:
                    bar.update(1)
        stack.extend(reversed(subdirs))  # sorted, depth-first: the same order every run


def progress_bar(*, total: int | None, desc: str, progress: bool, unit: str = "file") -> Any:
    """A tqdm bar on stderr; off when ``progress`` is False or stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not (progress and sys.stderr.isatty()),
        dynamic_ncols=True,
        leave=False,
    )


# -- parallel per-file work -----------------------------------------------------------------


def resolve_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def run_chunked(
    work: Callable[[list], ChunkResult],
    items: Sequence,
    *,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "scanning",
) -> ChunkResult:
    """Apply ``work`` (a module-level function taking a list of items, or a
    ``functools.partial`` of one: it must pickle) to chunks of ``items``, in worker
    processes when ``workers > 1``; rows come back in item order."""
    workers = resolve_workers(workers)
    items = list(items)
    if not items:
        return [], []
    size = max(1, min(MAX_CHUNK, -(-len(items) // (workers * 8))))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    results: list[ChunkResult | None] = [None] * len(chunks)
    if workers == 1 or len(chunks) == 1 or len(items) < MIN_PARALLEL:
        with progress_bar(total=len(items), desc=desc, progress=progress) as bar:
            for i, chunk in enumerate(chunks):
                results[i] = work(chunk)
                bar.update(len(chunk))
    else:
        # The pool forks before the bar exists: no tqdm monitor thread in the children.
        # Its workers die with this process, even when it is SIGKILLed.
        initializer, initargs = with_parent_watch()
        with ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)), initializer=initializer, initargs=initargs
        ) as pool:
            futures = {pool.submit(work, chunk): i for i, chunk in enumerate(chunks)}
            try:
                with progress_bar(total=len(items), desc=desc, progress=progress) as bar:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = future.result()
                        bar.update(len(chunks[i]))
            except BrokenProcessPool as err:
                raise CorpusError(
                    f"a scan worker process died ({err}); out of memory? try fewer workers"
                ) from err
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: stop promptly
                raise
    rows: list[Row] = []
    problems: list[Problem] = []
    for chunk_rows, chunk_problems in results:  # type: ignore[misc]
        rows.extend(chunk_rows)
        problems.extend(chunk_problems)
    return rows, problems


def guarded(one: Callable[[Any], ChunkResult], item: Any, file: str) -> ChunkResult:
    """Run the work on one item; an unexpected error becomes a problem row, so one odd
    file never stops a scan of hundreds of thousands."""
    try:
        return one(item)
    except Exception as err:  # deliberately broad: report and go on
        return [], [(file, f"unreadable-file: {type(err).__name__}: {err}")]


def _guarded_each(one: Callable[[Any], ChunkResult], items: list) -> ChunkResult:
    rows: list[Row] = []
    problems: list[Problem] = []
    for item in items:
        r, p = guarded(one, item, item[0])
        rows.extend(r)
        problems.extend(p)
    return rows, problems


def scan_each(
    one: Callable[[Any], ChunkResult],
    items: Sequence,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> ChunkResult:
    """Run ``one`` (a module-level function) on every item, in parallel chunks, each
    :func:`guarded` (``item[0]`` names the item's file): the scan of readers that read one
    clip at a time."""
    return run_chunked(
        partial(_guarded_each, one),
        items,
        workers=workers,
        progress=progress,
        desc="reading headers",
    )


# -- assembling the result ------------------------------------------------------------------


def unique_ids(candidates: Sequence[Sequence[str]], *, reserved: Iterable[str] = ()) -> list[str]:
    """Pick, per row, the first candidate id that no other row wants at that level.

    ``candidates[i]`` lists row i's ids from preferred (the file stem) to most specific
    (e.g. a relative path); ``~2``, ``~3`` … is appended if even the last one collides.
    Names in ``reserved`` are never chosen.
    """
    n = len(candidates)
    chosen: list[str | None] = [None] * n
    pending = list(range(n))
    level = 0
    taken: set[str] = set(reserved)
    while pending:
        wanted: dict[str, list[int]] = {}
        for i in pending:
            options = candidates[i]
            wanted.setdefault(options[min(level, len(options) - 1)], []).append(i)
        last = all(level >= len(candidates[i]) - 1 for i in pending)
        still: list[int] = []
        for name, rows in wanted.items():
            if len(rows) == 1 and name not in taken:
                chosen[rows[0]] = name
                taken.add(name)
            elif last:
                for k, i in enumerate(rows):
                    new = name if k == 0 and name not in taken else f"{name}~{k + 1}"
                    while new in taken:
                        new += "~"
                    chosen[i] = new
                    taken.add(new)
            else:
                still.extend(rows)
        pending = still
        level += 1
    return [c or "" for c in chosen]


def stem_ids(
    stems: Sequence[str],
    fallbacks: Callable[[int], Sequence[str]],
    *,
    reserved: Iterable[str] = (),
) -> list[str]:
    """Ids that are the file stem where it is unique, else the first of
    ``fallbacks(i)`` that is (computed only for the colliding rows)."""
    reserved = set(reserved)
    counts = Counter(stems)
    ids = list(stems)
    clash = [i for i, stem in enumerate(stems) if counts[stem] > 1 or stem in reserved]
    if clash:
        taken = reserved | {stem for stem in stems if counts[stem] == 1}
        fixed = unique_ids([(stems[i], *fallbacks(i)) for i in clash], reserved=taken)
        for i, ident in zip(clash, fixed, strict=True):
            ids[i] = ident
    return ids


def with_stem_ids(rows: Sequence[Row], fallbacks: Callable[[int], Sequence[str]]) -> list[Row]:
    """``rows`` (whose id is the file stem) with the ids :func:`stem_ids` makes unique."""
    ids = stem_ids([row[0] for row in rows], fallbacks)
    return [(ident, *row[1:]) for ident, row in zip(ids, rows, strict=True)]


def build_result(
    rows: Sequence[Row],
    problems: Sequence[Problem],
    *,
    labels: list[str] | None = None,
    notes: list[str] | None = None,
    sort: bool = True,
) -> ScanResult:
    """Rows and problems -> a :class:`ScanResult` (rows sorted by audio path unless
    ``sort`` is False, e.g. to keep a manifest's own order)."""
    from emofuse.labels import label_order

    if rows:
        table = pd.DataFrame(list(rows), columns=list(COLUMNS))
        table["duration_s"] = table["duration_s"].astype("float64")
        if sort:
            table = table.sort_values("audio", kind="stable").reset_index(drop=True)
    else:
        table = empty_table()
    problem_table = pd.DataFrame(list(problems), columns=list(PROBLEM_COLUMNS))
    if len(problem_table):
        problem_table = problem_table.sort_values(["file", "reason"], kind="stable")
        problem_table = problem_table.reset_index(drop=True)
    if labels is None:
        labels = label_order(table["label"])
    return ScanResult(table=table, problems=problem_table, labels=labels, notes=notes or [])


def paired_row(
    stem: str, wav: str, text: object, label: str, speaker: str, duration: float, split: str
) -> Row:
    """The row of a WAV + label-file pair whose checks passed: the id is the file stem (made
    unique later by :func:`with_stem_ids`), the script its trailing number or, failing
    that, the sentence's own id."""
    text = str(text).strip()
    script = trailing_number(stem) or text_script_id(text)
    return (stem, wav, text, label, speaker, script, duration, split)


def scan_pairs(
    one: Callable[[Any], ChunkResult],
    items: list,
    problems: list[Problem],
    fallback_ids: Callable[[Sequence[Row], int], Sequence[str]],
    *,
    workers: int | None,
    progress: bool,
) -> ScanResult:
    """Run ``one`` over ``items`` (in worker processes when many), give colliding stems
    the first unique id of ``fallback_ids(rows, i)``, and collect every problem."""
    rows, scan_problems = scan_each(one, items, workers=workers, progress=progress)
    rows = with_stem_ids(rows, lambda i: fallback_ids(rows, i))
    return build_result(rows, problems + scan_problems)
