"""`emofuse predict --manifest`: a manifest of clips streamed through the engine into a table.

A CSV, TSV or Parquet manifest (an ``audio`` column, relative paths relative to the
manifest, and/or a ``text`` column) is read :data:`MANIFEST_CHUNK_ROWS` rows at a time;
each chunk is predicted (a bad row fails alone, :meth:`PredictionEngine.predict_each`) and
appended to the output before the next is read. Each row keeps the manifest's columns and
gets the prediction's (:data:`emofuse.predict.rows.MANIFEST_ROW`) and an ``error``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from emofuse.outputs import OutputFiles, TableWriter, table_format
from emofuse.predict.engine import Outcome, PredictInput, PredictionEngine, PredictionError
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
    from emofuse.corpus.delimited import read_delimited  # names a wrong encoding/separator

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such manifest")
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
        return
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    # A blank line is a row (an empty text still gets its answer), never skipped.
    yield from read_delimited(path, sep, chunksize=rows, skip_blank_lines=False)


def count_manifest_rows(path: Path, rows: int = 65536) -> int:
    """The rows of a manifest (the total of ``predict --manifest``'s bar), without holding
    them: Parquet from its footer, CSV / TSV parsed ``rows`` rows at a time (one column
    kept), so a quoted cell with a line break counts as the one row it is."""
    if path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    from emofuse.corpus.delimited import read_delimited

    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    chunks = read_delimited(path, sep, chunksize=rows, skip_blank_lines=False, usecols=[0])
    return sum(len(chunk) for chunk in chunks)


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
    score_chunk: Callable[[pd.DataFrame], list[Outcome]] | None = None,
) -> ManifestSummary:
    """Predict every row of ``manifest`` into ``output`` (CSV, TSV or Parquet, as its
    extension says), streaming: each chunk of rows is read, predicted and appended before
    the next is read, so memory does not grow with the manifest. Rows are written to
    ``<output>.partial``, renamed to ``output`` at the end: a run stopped part-way leaves
    its finished rows there, never a cut file that looks whole. Every row of the manifest
    (a blank line too) gives one row of the output, in place. A bad
    row gets an ``error`` value; the rest go on. With the engine's ``min_confidence`` an
    ``uncertain`` column follows ``predicted`` (empty for a failed row). ``score_chunk``:
    how a chunk's rows are scored (default: the engine, row by row; rows grouped by speaker:
    :func:`emofuse.predict.speakers.predict_by_speaker`); a bundle that adapts to speakers
    gets a ``speaker_clips`` column. The bar's total is the manifest's row count
    (:func:`count_manifest_rows`)."""
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
        speaker_clips=getattr(bundle, "speaker_norm", None) is not None,
    )  # fmt: skip
    columns = list(row_of(None))  # a failed row has every column, blank
    fmt = table_format(output)  # the output's extension says: .csv, .tsv or .parquet
    bar = None
    # Written beside the output and renamed once whole: a run stopped part-way (a full
    # disk, a kill) leaves <output>.partial, never a cut file under the output's name.
    with (
        contextlib.ExitStack() as stack,
        OutputFiles(keep_partial=True) as files,
        files.writing(output) as partial,
        TableWriter(
            partial, fmt, numeric=[c for c in columns if c.startswith("p_") or c == "speaker_clips"]
        ) as writer,
    ):
        for chunk in read_manifest_chunks(manifest, chunk_rows or MANIFEST_CHUNK_ROWS):
            if summary.rows == 0:
                _check_manifest_columns(manifest, chunk, bundle)
            if score_chunk is None:
                outcomes = engine.predict_each(manifest_inputs(chunk, base))
            else:  # e.g. rows adapted to their speaker (emofuse.predict.speakers)
                outcomes = score_chunk(chunk)  # (the first call may run a pass of its own)
            if bar is None:  # once the manifest proved readable; its total: a second read
                total = count_manifest_rows(manifest) if progress else None
                bar = stack.enter_context(contextlib.closing(
                    tqdm(total=total, desc="predicting", unit="clip", disable=not progress)
                ))  # fmt: skip
            rows = [row_of(o.prediction) for o in outcomes]
            out = chunk.copy()
            for column in columns:
                out[column] = [row[column] for row in rows]
            out["error"] = [str(o.error) if o.error is not None else "" for o in outcomes]
            for column in ("uncertain", "agree"):  # one type in every chunk (Parquet)
                if column in out:
                    out[column] = out[column].astype("boolean")
            writer.write(out)
            for k, o in enumerate(outcomes):
                if o.error is not None:
                    summary.failed += 1
                    if len(summary.first_errors) < 5:
                        summary.first_errors.append((summary.rows + k, str(o.error)))
            summary.rows += len(chunk)
            bar.update(len(chunk))
        if not writer.rows:  # an empty manifest: the columns, no rows
            import pandas as pd

            writer.write(pd.DataFrame(columns=[*columns, "error"]))
    return summary


def _check_manifest_columns(path: Path, frame: pd.DataFrame, bundle: Bundle) -> None:
    columns = list(frame.columns)
    if "audio" not in columns and bundle.needs_audio:
        raise PredictionError(f"{path}: no `audio` column (columns: {columns})")
    if "audio" not in columns and "text" not in columns:
        raise PredictionError(f"{path}: needs an `audio` and/or a `text` column")
