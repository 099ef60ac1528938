"""`emofuse predict --manifest` grouped by speaker: each row adapted to the statistics of
all the rows of its speaker, for a bundle that adapts to speakers.

The manifest is read in chunks twice, so memory stays flat in the rows:

1. the first pass encodes every row once (waveform, speech recognition, the encoders: the
   slow part) and accumulates each speaker's :class:`~emofuse.head.speaker_stats.Moments`
   (one pair of arrays per speaker, whatever the rows). Each row's vector
   goes to a temporary file beside the output (float32, appended chunk by chunk), its text,
   warnings or error to a second one (JSON lines);
2. the second pass reads the manifest again chunk by chunk, takes the chunk's vectors back
   from the first file (a memory map: only the chunk is read), scores them with their
   speaker's statistics over the whole manifest and hands them to the writer of
   :func:`emofuse.predict.manifest.predict_manifest`.

Keeping the vectors costs disk (4 bytes per value per row, removed at the end, also on
failure) where recomputing them would run the encoders and speech recognition a second
time. Rows with a blank speaker cell are scored unadapted (``speaker_clips`` blank); a
row that failed in the first pass adds nothing to the statistics and keeps its error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emofuse.head.speaker_stats import Moments, speaker_key
from emofuse.predict.adapt import call_statistics
from emofuse.predict.encoded import Encoded
from emofuse.predict.engine import Outcome, PredictInput, PredictionEngine, PredictionError
from emofuse.predict.manifest import (
    MANIFEST_CHUNK_ROWS,
    ManifestSummary,
    count_manifest_rows,
    manifest_inputs,
    predict_manifest,
    read_manifest_chunks,
)

if TYPE_CHECKING:
    import pandas as pd

#: The column that names each row's speaker unless ``--speaker-column`` names another.
SPEAKER_COLUMN = "speaker"


def adapts_to_speakers(bundle: Any) -> bool:
    """Whether the bundle normalises clips by their speaker's statistics."""
    return getattr(bundle, "speaker_norm", None) is not None


def find_speaker_column(columns: list[str], name: str) -> str | None:
    """The column called ``name`` (exactly, else the one that matches ignoring case)."""
    if name in columns:
        return name
    matches = [c for c in columns if str(c).strip().lower() == name.strip().lower()]
    return matches[0] if len(matches) == 1 else None


def manifest_columns(manifest: Path) -> list[str]:
    """The manifest's column names (read from its first row only)."""
    first = next(iter(read_manifest_chunks(manifest, 1)), None)
    return [] if first is None else [str(c) for c in first.columns]


def predict_by_speaker(
    engine: PredictionEngine,
    manifest: Path,
    output: Path,
    *,
    column: str,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> ManifestSummary:
    """:func:`~emofuse.predict.manifest.predict_manifest`, each row adapted to the
    statistics of all the rows whose ``column`` names the same speaker (two passes, see
    the module docstring)."""
    rows = chunk_rows or MANIFEST_CHUNK_ROWS
    with SpeakerPass(engine, manifest, output, column, rows, progress) as speakers:
        summary = predict_manifest(
            engine, manifest, output, chunk_rows=rows, progress=progress,
            score_chunk=speakers.outcomes,
        )  # fmt: skip
        if speakers.rows and speakers.scored != speakers.rows:
            raise PredictionError(f"{manifest}: the manifest changed while it was read")
        return summary


def _row_key(item: PredictInput) -> str:
    """What identifies a manifest row's input in both passes (its audio path and text)."""
    audio = item.audio if isinstance(item.audio, str | os.PathLike) else ""
    return hashlib.sha1(f"{audio}\0{item.text}".encode()).hexdigest()


class SpeakerPass:
    """The first pass (run on the first chunk the writer asks for, after its column
    checks) and the scores of the second; a context manager that removes its files."""

    def __init__(
        self,
        engine: PredictionEngine,
        manifest: Path,
        output: Path,
        column: str,
        chunk_rows: int,
        progress: bool = True,
    ):
        self.engine, self.manifest, self.output = engine, manifest, output
        self.column, self.chunk_rows, self.progress = column, chunk_rows, progress
        self.width = int(engine.bundle.head.input_dim)
        self.stats: dict[str, Moments] = {}
        self.rows = 0  # rows of the first pass
        self._offset = 0  # rows scored in the second
        self._paths: list[Path] = []
        self._vectors: np.ndarray | None = None
        self._meta: Any = None

    @property
    def scored(self) -> int:
        """Rows of the second pass scored so far."""
        return self._offset

    def __enter__(self) -> SpeakerPass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget the vectors and remove the temporary files."""
        self._vectors = None
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._paths = []

    def _temporary(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(
            prefix=f".{self.output.name}.", suffix=suffix, dir=self.output.parent
        )
        os.close(handle)
        self._paths.append(Path(name))
        return Path(name)

    def _speakers(self, chunk: pd.DataFrame) -> list[str | None]:
        if self.column not in chunk.columns:
            raise PredictionError(
                f"{self.manifest}: no speaker column {self.column!r} (columns: "
                f"{list(chunk.columns)})"
            )
        return [speaker_key(s) for s in chunk[self.column].tolist()]

    def first_pass(self) -> None:
        """Encode every row, keep its vector and notes on disk, gather the statistics."""
        from tqdm.auto import tqdm

        base = self.manifest.resolve().parent
        vectors_path, meta_path = self._temporary(".vectors"), self._temporary(".jsonl")
        total = count_manifest_rows(self.manifest) if self.progress else None
        bar = tqdm(total=total, desc="speaker statistics", unit="clip", disable=not self.progress)
        try:
            with (
                open(vectors_path, "wb") as vectors,
                open(meta_path, "w", encoding="utf-8") as meta,
            ):
                for chunk in read_manifest_chunks(self.manifest, self.chunk_rows):
                    items = manifest_inputs(chunk, base)
                    for item, speaker in zip(items, self._speakers(chunk), strict=True):
                        item.speaker = speaker
                    keys = [_row_key(item) for item in items]
                    each = self.engine.encode_each(items)
                    x = np.zeros((len(chunk), self.width), dtype=np.float32)
                    x[each.rows] = each.encoded.x
                    vectors.write(x.tobytes())
                    notes = dict(zip(each.rows, zip(each.encoded.texts, each.encoded.warnings,
                                                    strict=True), strict=True))  # fmt: skip
                    for k in range(len(chunk)):
                        if k in each.errors:
                            line = {"error": str(each.errors[k])}
                        else:
                            line = {"text": notes[k][0], "warnings": notes[k][1]}
                        line["key"] = keys[k]
                        meta.write(json.dumps(line, ensure_ascii=False) + "\n")
                    call_statistics(
                        self.engine.speaker_norm, each.encoded.x, each.encoded.speakers, self.stats
                    )
                    self.rows += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        if self.rows:
            self._vectors = np.memmap(vectors_path, np.float32, "r", shape=(self.rows, self.width))
        self._meta = open(meta_path, encoding="utf-8")  # noqa: SIM115 - read chunk by chunk

    def outcomes(self, chunk: pd.DataFrame) -> list[Outcome]:
        """One outcome per row of the next chunk of the second pass."""
        if self._meta is None:
            self.first_pass()
        start, n = self._offset, len(chunk)
        if start + n > self.rows:
            raise PredictionError(f"{self.manifest}: the manifest changed while it was read")
        speakers = self._speakers(chunk)
        notes = [json.loads(self._meta.readline()) for _ in range(n)]
        base = self.manifest.resolve().parent
        now = [_row_key(item) for item in manifest_inputs(chunk, base)]
        if now != [note.get("key") for note in notes]:  # vectors must meet their own rows
            raise PredictionError(f"{self.manifest}: the manifest changed while it was read")
        good = [k for k, note in enumerate(notes) if "error" not in note]
        x = np.asarray(self._vectors[start : start + n])[good] if n else np.zeros((0, self.width))
        encoded = Encoded(
            np.ascontiguousarray(x, dtype=np.float32),
            [notes[k]["text"] for k in good],
            [list(notes[k]["warnings"]) for k in good],
            [speakers[k] for k in good],
        )
        out = [
            Outcome(None, PredictionError(note["error"])) if "error" in note else None
            for note in notes
        ]
        for k, outcome in zip(
            good, self.engine.score_each(encoded, speaker_stats=self.stats), strict=True
        ):
            out[k] = outcome
        self._offset += n
        return out
