"""Reader for AI-Hub dataset 466 as released: WAVs under `원천데이터/`, one label JSON per
WAV at the same relative path under the sibling `라벨링데이터/`.

    <root>/Training/원천데이터/1.감정/1.기쁨/0001_G1A3E1S0C0_ABC/0001_G1A3E1S0C0_ABC_000123.wav
    <root>/Training/라벨링데이터/1.감정/1.기쁨/0001_G1A3E1S0C0_ABC/0001_G1A3E1S0C0_ABC_000123.json

Tolerated: `01.원천데이터`-style names, `TS_`/`TL_`/`VS_`/`VL_` prefixes left by extracted
zips (paired across the two trees as if absent), any depth below the data folders, the
data folders anywhere up to three levels below the root, NFD-encoded Hangul names.
The label comes from the emotion folder (`<n>.<감정>`), cross-checked with the JSON's
`화자정보.Emotion`; the text from `전사정보.OrgLabelText`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from emofuse.corpus.fields import get_field, korean_label, nfc, split_from_parts
from emofuse.corpus.files import Problem, read_label_pair, walk_files
from emofuse.corpus.rows import Row, paired_row
from emofuse.corpus.scan import ChunkResult, CorpusError, corpus_dir, progress_bar, scan_pairs
from emofuse.corpus.table import ScanResult
from emofuse.labels import KOREAN_TO_ENGLISH

SOURCE_MARK = "원천데이터"
LABEL_MARK = "라벨링데이터"
TEXT_FIELD = "전사정보.OrgLabelText"
EMOTION_FIELD = "화자정보.Emotion"
#: How far below the root the data folders may sit (root/Training/원천데이터 is 2).
MAX_DEPTH = 3

_ZIP_PREFIX = re.compile(r"^[TV][SL]\d*_")  # TS_ (training source), VL_ (validation label)
_FOLDER_PREFIX = re.compile(r"^(?:[A-Za-z]{1,3}\d*_)?\d*[._\-\s]*")


@lru_cache(maxsize=4096)  # a corpus has few distinct folder names
def folder_emotion(name: str) -> str | None:
    """``"1.기쁨"``, ``"TS_4.불안"``, ``"happy"`` -> the canonical label; None if the folder
    names no emotion."""
    name = nfc(name)
    core = _FOLDER_PREFIX.sub("", name).strip()
    if core and (label := korean_label(core)):
        return label
    hits = {english for korean, english in KOREAN_TO_ENGLISH.items() if korean in name}
    return hits.pop() if len(hits) == 1 else None


def speaker_from_code(code: str) -> str:
    """``"0001_G1A3E1S0C0_ABC"`` -> ``"0001_ABC"`` (first and last ``_`` fields); any
    other shape is kept as it is."""
    fields = code.split("_")
    if len(fields) >= 3 and fields[0] and fields[-1]:
        return f"{fields[0]}_{fields[-1]}"
    return code


def find_data_dirs(root: Path, max_depth: int = MAX_DEPTH) -> tuple[list[Path], list[Path]]:
    """The `*원천데이터*` and `*라벨링데이터*` folders up to ``max_depth`` below ``root``."""
    sources: list[Path] = []
    labels: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        below: list[Path] = []
        for directory in level:
            name = nfc(directory.name)
            if SOURCE_MARK in name:
                sources.append(directory)
            elif LABEL_MARK in name:
                labels.append(directory)
            else:
                try:
                    below.extend(
                        Path(e.path)
                        for e in os.scandir(directory)
                        if e.is_dir() and e.name[0] != "." and e.name != "__MACOSX"
                    )
                except OSError:
                    continue
        level = sorted(below)
    return sorted(sources), sorted(labels)


def looks_like_aihub466(root: Path) -> bool:
    sources, labels = find_data_dirs(root)
    return bool(sources or labels)


@lru_cache(maxsize=65536)
def _dir_key(name: str) -> str:
    return _ZIP_PREFIX.sub("", nfc(name))


def _pair_key(rel_dirs: tuple[str, ...], stem: str) -> tuple[str, ...]:
    """What a WAV and its JSON share: the relative path, zip prefixes and suffix dropped."""
    return (*(_dir_key(d) for d in rel_dirs), nfc(stem))


def _split_of(above: str, rel_dirs: tuple[str, ...]) -> str:
    """``above``: the split named by the folders above the data folder, if any."""
    if above:
        return above
    for d in rel_dirs:  # TS_/TL_ = training, VS_/VL_ = validation zips
        if _ZIP_PREFIX.match(d):
            return "train" if d[0] == "T" else "validation"
    return ""


def _index(
    data_dir: Path, suffix: str, bar, problems: list[Problem]
) -> dict[tuple[str, ...], tuple[str, tuple[str, ...]]]:
    """key -> (path, directories between data_dir and the file). A second file with
    the same key (e.g. a zip extracted twice, as `TS_1.기쁨/` and `1.기쁨/`) is a problem."""
    out: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {}
    skip = len(str(data_dir)) + 1  # walk_files yields "<data_dir>/<rel>"
    for path in walk_files(data_dir, {suffix}, bar=bar):
        parts = tuple(path[skip:].split(os.sep))
        stem = os.path.splitext(parts[-1])[0]
        key = _pair_key(parts[:-1], stem)
        if key in out:
            problems.append((path, f"duplicate-file: the same clip as {out[key][0]}"))
            continue
        out[key] = (path, parts[:-1])
    return out


def _pair(
    wavs: dict, jsons: dict
) -> tuple[list[tuple[str, str, tuple[str, ...]]], list[str], list[str]]:
    """Pair WAV and JSON by relative path; what is left is paired by file stem when the
    stem is unique on both sides. Returns (pairs, lone wavs, lone jsons)."""
    pairs = [(wav, jsons[key][0], dirs) for key, (wav, dirs) in wavs.items() if key in jsons]
    lone_wav = {k: v for k, v in wavs.items() if k not in jsons}
    lone_json = {k: v for k, v in jsons.items() if k not in wavs}
    if lone_wav and lone_json:
        by_stem_json: dict[str, list] = {}
        for key in lone_json:
            by_stem_json.setdefault(key[-1], []).append(key)
        by_stem_wav: dict[str, list] = {}
        for key in lone_wav:
            by_stem_wav.setdefault(key[-1], []).append(key)
        for stem, wav_keys in by_stem_wav.items():
            json_keys = by_stem_json.get(stem, [])
            if len(wav_keys) == 1 and len(json_keys) == 1:
                wav, dirs = lone_wav.pop(wav_keys[0])
                pairs.append((wav, lone_json.pop(json_keys[0])[0], dirs))
    return pairs, [v[0] for v in lone_wav.values()], [v[0] for v in lone_json.values()]


def _scan_one(item: tuple[str, str, tuple[str, ...], str]) -> ChunkResult:
    wav, json_path, dirs, split = item
    stem = os.path.splitext(os.path.basename(wav))[0]
    obj, duration, problems = read_label_pair(wav, json_path)
    if obj is None:
        return [], problems

    text = get_field(obj, TEXT_FIELD)
    if text is None:
        problems.append(
            (
                json_path,
                f"missing-field: no '{TEXT_FIELD}' field (is this a dataset-466 label file?)",
            )
        )
    elif not str(text).strip():
        problems.append((json_path, f"empty-text: '{TEXT_FIELD}' is empty"))

    folder_label = next((lab for d in reversed(dirs) if (lab := folder_emotion(d))), None)
    json_emotion = get_field(obj, EMOTION_FIELD)
    json_label = None
    if json_emotion is not None and str(json_emotion).strip():
        json_label = korean_label(json_emotion)
        if folder_label is not None and json_label != folder_label:
            problems.append(
                (
                    json_path,
                    f"label-mismatch: emotion folder says {folder_label!r}, "
                    f"'{EMOTION_FIELD}' says {json_emotion!r}",
                )
            )
    label = folder_label or json_label
    if label is None:
        detail = f"no emotion folder (1.기쁨 … 7.중립) above the file and '{EMOTION_FIELD}'"
        detail += f" is {json_emotion!r}" if json_emotion is not None else " is missing"
        problems.append((json_path, f"unknown-label: {detail}"))
    if problems:
        return [], problems

    parent = dirs[-1] if dirs else ""
    if parent and folder_emotion(parent) is None:
        speaker = speaker_from_code(nfc(parent))
    else:  # files directly in the emotion folder: the code is in the file name
        speaker = speaker_from_code(re.sub(r"_\d+$", "", nfc(stem)))
    return [paired_row(nfc(stem), wav, text, label, speaker, duration, split)], []


def read_aihub466(
    root: str | Path, *, workers: int | None = None, progress: bool = True
) -> ScanResult:
    """Scan a dataset-466 tree; every bad or unpaired file becomes a problem row."""
    root = corpus_dir(root, "the dataset-466 folder")
    if SOURCE_MARK in nfc(root.name) or LABEL_MARK in nfc(root.name):
        root = root.parent  # pointed at Training/원천데이터 itself
    sources, label_dirs = find_data_dirs(root)
    if not sources and not label_dirs:
        raise CorpusError(
            f"{root}: no '{SOURCE_MARK}' or '{LABEL_MARK}' folder within {MAX_DEPTH} levels "
            "(is this AI-Hub dataset 466?)"
        )

    items: list[tuple[str, str, tuple[str, ...], str]] = []
    problems: list[Problem] = []
    unpaired_labels = list(label_dirs)
    with progress_bar(total=None, desc="listing", progress=progress) as bar:
        for source in sources:
            siblings = [d for d in unpaired_labels if d.parent == source.parent]
            label_dir = siblings[0] if siblings else None
            wavs = _index(source, ".wav", bar, problems)
            jsons: dict = {}
            if label_dir is not None:
                unpaired_labels.remove(label_dir)
                jsons = _index(label_dir, ".json", bar, problems)
            pairs, lone_wavs, lone_jsons = _pair(wavs, jsons)
            above = split_from_parts((root.name, *source.relative_to(root).parts[:-1]))
            for wav, json_path, dirs in pairs:
                items.append((wav, json_path, dirs, _split_of(above, dirs)))
            where = label_dir or source.parent / LABEL_MARK
            problems += [
                (w, f"missing-json: no label file for it under {where}") for w in lone_wavs
            ]
            problems += [(j, f"missing-wav: no audio for it under {source}") for j in lone_jsons]
        for label_dir in unpaired_labels:
            for j in walk_files(label_dir, {".json"}, bar=bar):
                problems.append((j, f"missing-wav: no '{SOURCE_MARK}' folder beside {label_dir}"))

    def fallback_ids(rows: Sequence[Row], i: int) -> tuple[str, str]:
        stem, wav, split = rows[i][0], rows[i][1], rows[i][7]
        relative = Path(os.path.relpath(wav, root)).with_suffix("").as_posix()
        return (f"{split}/{stem}" if split else stem, relative)

    return scan_pairs(_scan_one, items, problems, fallback_ids, workers=workers, progress=progress)
