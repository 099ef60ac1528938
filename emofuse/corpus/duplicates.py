"""Duplicate audio: one clip under two rows of the table (the same file listed twice, or
identical bytes under another name), found without reading the corpus twice.

A corpus scan reads headers only, so content is compared only where it can be equal:

1. header facts: clips of another duration (frames / rate, read by the scan) cannot be
   equal, and nothing is opened for them;
2. where durations collide (common: clips come in few lengths), a quick fingerprint of
   the size and three 4 KiB blocks (start, middle, end), in worker processes;
3. where fingerprints collide, the whole content (BLAKE2b), so equal means equal.

Rows whose audio is equal form a group; every row but the first of a group gets a
``duplicate-audio`` problem row naming the first (both rows are kept: which label is
right is the corpus owner's call), and the table gets an ``audio_group`` column (the
first row's audio path for rows of a group, ``''`` for the rest) that every split
strategy keeps in one part (:func:`emofuse.splits.groups.audio_keys`).
"""

from __future__ import annotations

import hashlib
import os

import pandas as pd

from emofuse.corpus.files import Problem
from emofuse.corpus.scan import ChunkResult, run_chunked

#: The column naming a row's duplicate-audio group ('' for audio no other row has).
AUDIO_GROUP = "audio_group"
#: Bytes read at each of the three places of the quick fingerprint.
BLOCK = 4096
_READ = 1 << 20


def duplicate_audio(
    table: pd.DataFrame, *, workers: int | None = None, progress: bool = True
) -> tuple[pd.Series | None, list[Problem]]:
    """``(audio_group, problems)`` for a table's rows: the group column (None when no two
    rows share their audio) and one ``duplicate-audio`` problem per repeated row."""
    audio = table["audio"].fillna("").astype(str).to_numpy()
    paths = [p for p in pd.unique(audio) if p]  # in table order
    same = _equal_content(paths, table, workers=workers, progress=progress)
    # A group is named by the audio of its first row: the first of its paths in table order.
    keys = pd.Series([same.get(p, p) if p else "" for p in audio], index=table.index)
    counts = keys[keys != ""].value_counts()
    if not (counts > 1).any():
        return None, []
    group = keys.where(keys.map(counts).fillna(0) > 1, "").astype(object)
    return group, _problems(table, group)


def _problems(table: pd.DataFrame, group: pd.Series) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[str, tuple[str, str, str]] = {}
    ids, labels = table["id"].astype(str), table["label"].astype(str)
    rows = zip(group, ids, table["audio"], labels, strict=True)
    for key, ident, path, label in rows:
        if not key:
            continue
        if key not in first:
            first[key] = (ident, path, label)
            continue
        first_id, first_path, first_label = first[key]
        where = (
            "the same file, listed again"
            if path == first_path
            else f"the same audio as {first_path}"
        )
        both = (
            f"both labelled {label!r}"
            if label == first_label
            else f"labelled {first_label!r} and {label!r}"
        )
        problems.append(
            (
                path,
                f"duplicate-audio: {where} (rows {first_id!r} and {ident!r}, {both}); both "
                f"kept, and every split keeps them in one part ({AUDIO_GROUP} column)",
            )
        )
    return problems


def _equal_content(
    paths: list[str], table: pd.DataFrame, *, workers: int | None, progress: bool
) -> dict[str, str]:
    """path -> the first path of ``paths`` with the same bytes, for files that have one."""
    durations = dict(zip(table["audio"], table["duration_s"], strict=False))
    by_duration: dict[object, list[str]] = {}
    for path in paths:
        by_duration.setdefault(durations.get(path), []).append(path)
    candidates = [p for group in by_duration.values() if len(group) > 1 for p in group]
    same: dict[str, str] = {}
    for stage in (_fingerprints, _digests):
        if not candidates:
            break
        found, _ = run_chunked(
            stage, candidates, workers=workers, progress=progress, desc="comparing audio"
        )
        groups: dict[str, list[str]] = {}
        for path, digest in found:
            groups.setdefault(digest, []).append(path)
        candidates = [p for group in groups.values() if len(group) > 1 for p in group]
        if stage is _digests:
            order = {p: i for i, p in enumerate(paths)}
            for group in groups.values():
                if len(group) > 1:
                    first = min(group, key=order.__getitem__)
                    same.update((p, first) for p in group)
    return same


def _fingerprints(paths: list[str]) -> ChunkResult:
    """(path, hash of the size and three blocks: start, middle, end) per readable file."""
    out = []
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            size = os.fstat(fd).st_size
            digest = hashlib.blake2b(str(size).encode(), digest_size=16)
            if size <= 3 * BLOCK:  # a small file: all of it
                digest.update(os.pread(fd, size, 0))
            else:
                for at in (0, size // 2 - BLOCK // 2, size - BLOCK):
                    digest.update(os.pread(fd, BLOCK, at))
            out.append((path, digest.hexdigest()))
        except OSError:
            continue
        finally:
            os.close(fd)
    return out, []


def _digests(paths: list[str]) -> ChunkResult:
    """(path, BLAKE2b of the whole file) per readable file."""
    out = []
    for path in paths:
        digest = hashlib.blake2b(digest_size=32)
        try:
            with open(path, "rb") as handle:
                while block := handle.read(_READ):
                    digest.update(block)
        except OSError:
            continue
        out.append((path, digest.hexdigest()))
    return out, []
