"""`emofuse predict --manifest`: a manifest of clips streamed through the engine into a CSV.

A CSV, TSV or Parquet manifest (an ``audio`` column, relative paths relative to the
manifest, and/or a ``text`` column) is read :data:`MANIFEST_CHUNK_ROWS` rows at a time;
each chunk is predicted (a bad row fails alone, :meth:`PredictionEngine.predict_each`) and
appended to the output before the next is read. Each row keeps the manifest's columns and
gets the prediction's (:data:`emofuse.predict.rows.MANIFEST_ROW`) and an ``error``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from emofuse.predict.engine import PredictInput, PredictionEngine, PredictionError
from emofuse.predict.rows import MANIFEST_ROW, prediction_row

if TYPE_CHECKING:
    import pandas as pd

    from emofuse.bundle.load import Bundle

#: Rows of a manifest read, predicted and written at a time by :func:`predict_manifest`.
MANIFEST_CHUNK_ROWS = 256


@dataclass
class ManifestSummary:
    rows: int = 0
    failed: int = 0
    #: (row number, message) of the first few failures.
    first_errors: list[tuple[int, str]] = field(default_factory=list)


def read_manifest_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """A CSV / TSV / Parquet manifest, ``rows`` rows at a time (never all in memory)."""
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such manifest")
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
        return
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    yield from pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, chunksize=rows)


def manifest_inputs(frame: pd.DataFrame, base: Path) -> list[PredictInput]:
    """Rows of a manifest (``audio`` relative to ``base``, optional ``text``) as inputs."""
    inputs = []
    for row in frame.to_dict("records"):
        raw = row.get("audio")
        raw = str(raw).strip() if raw is not None and raw == raw else ""
        path = None
        if raw:
            path = Path(raw) if Path(raw).is_absolute() else base / raw
        text = row.get("text")
        text = str(text) if text is not None and text == text else None
        inputs.append(PredictInput(path, text, str(path) if path else None))
    return inputs


def predict_manifest(
    engine: PredictionEngine,
    manifest: Path,
    output: Path,
    *,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> ManifestSummary:
    """Predict every row of ``manifest`` into ``output`` (CSV), streaming: each chunk of
    rows is read, predicted and appended before the next is read, so memory does not grow
    with the manifest and finished rows are on disk if a later one stops the run. A bad
    row gets an ``error`` value; the rest go on. With the engine's ``min_confidence`` an
    ``uncertain`` column follows ``predicted`` (empty for a failed row)."""
    from tqdm.auto import tqdm

    bundle = engine.bundle
    bundle.encoders()  # a bundle that cannot rebuild its encoders fails the run, not each row
    base = manifest.resolve().parent
    summary = ManifestSummary()
    output.parent.mkdir(parents=True, exist_ok=True)
    row_of = functools.partial(
        prediction_row, labels=bundle.labels, layout=MANIFEST_ROW,
        min_confidence=engine.min_confidence, modalities=list(bundle.modality_heads),
        with_text=bundle.needs_text,
    )  # fmt: skip
    columns = list(row_of(None))  # a failed row has every column, blank
    bar = tqdm(desc="predicting", unit="clip", disable=not progress)
    try:
        for chunk in read_manifest_chunks(manifest, chunk_rows or MANIFEST_CHUNK_ROWS):
            if summary.rows == 0:
                _check_manifest_columns(manifest, chunk, bundle)
            outcomes = engine.predict_each(manifest_inputs(chunk, base))
            rows = [row_of(o.prediction) for o in outcomes]
            out = chunk.copy()
            for column in columns:
                out[column] = [row[column] for row in rows]
            out["error"] = [str(o.error) if o.error is not None else "" for o in outcomes]
            out.to_csv(output, mode="w" if summary.rows == 0 else "a", header=summary.rows == 0,
                       index=False)  # fmt: skip
            for k, o in enumerate(outcomes):
                if o.error is not None:
                    summary.failed += 1
                    if len(summary.first_errors) < 5:
                        summary.first_errors.append((summary.rows + k, str(o.error)))
            summary.rows += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
    return summary


def _check_manifest_columns(path: Path, frame: pd.DataFrame, bundle: Bundle) -> None:
    columns = list(frame.columns)
    if "audio" not in columns and bundle.needs_audio:
        raise PredictionError(f"{path}: no `audio` column (columns: {columns})")
    if "audio" not in columns and "text" not in columns:
        raise PredictionError(f"{path}: needs an `audio` and/or a `text` column")
