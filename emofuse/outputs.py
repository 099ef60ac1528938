"""Writing a command's output files so that a reader never takes a cut file for a whole
one, in the format the file's name says.

- :class:`OutputFiles`: each file of a set is written under a partial name beside its
  final one (``<name>.partial``) and renamed into place only once every file of the set is
  whole, in the order given (so the file that says "done", a summary, goes last). On a
  failure (a full disk, a kill) the old outputs stay as they were and the partial files
  are removed, or kept under their partial name when asked (rows predicted so far). A
  leftover partial file is unlinked, never truncated: it may be a link to something else.
  :func:`write_whole` does this for one file.
- :func:`naming`: an ``OSError`` without a file name (a ``write()`` on an open file, e.g.
  on a full disk, names none) gets the file's, so the command's one-line error names it.
- :data:`TABLE_FORMATS`, :func:`table_format`, :class:`TableWriter`: a table written as
  CSV, TSV or Parquet as its extension says, chunk by chunk (never all in memory).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: What a file being written is called until it is whole.
PARTIAL_SUFFIX = ".partial"

#: Table formats by file extension (lower case).
TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class TableFormatError(ValueError):
    """An output whose extension names no table format this output can be written in."""


def partial_path(path: str | os.PathLike[str]) -> Path:
    """``<path>.partial``: where ``path`` is written until it is whole."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """An ``OSError`` raised inside that names no file is raised again naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        code = err.errno if err.errno is not None else errno.EIO
        raise OSError(code, err.strerror or str(err) or os.strerror(code), str(path)) from err


class OutputFiles:
    """Files written beside their final names and put in place together at the end.

    ``with OutputFiles() as files:`` then ``with files.writing(final) as partial:`` for
    each file (write to ``partial``); when the outer block ends without an error every
    partial file is renamed onto its final name, in the order they were started. With
    ``keep_partial`` a failure leaves the partial files (under their partial names) for
    the user; otherwise it removes them.
    """

    def __init__(self, *, keep_partial: bool = False):
        self.keep_partial = keep_partial
        self._pending: list[tuple[Path, Path]] = []

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        elif not self.keep_partial:
            self.discard()

    def partial(self, final: str | os.PathLike[str]) -> Path:
        """The partial name of ``final``, cleared of any leftover and registered."""
        final = Path(final)
        partial = partial_path(final)
        with naming(partial):
            partial.unlink(missing_ok=True)  # unlink, never truncate: it may be a hard link
        self._pending.append((partial, final))
        return partial

    @contextlib.contextmanager
    def writing(self, final: str | os.PathLike[str]) -> Iterator[Path]:
        """Yield the partial path to write ``final`` to; an unnamed ``OSError`` while
        writing names the file (the partial one when it is kept, else ``final``)."""
        partial = self.partial(final)
        with naming(partial if self.keep_partial else final):
            yield partial

    def commit(self) -> None:
        """Rename every partial file onto its final name, in order."""
        pending, self._pending = self._pending, []
        for partial, final in pending:
            with naming(final):
                os.replace(partial, final)

    def discard(self) -> None:
        pending, self._pending = self._pending, []
        for partial, _ in pending:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)


@contextlib.contextmanager
def write_whole(path: str | os.PathLike[str], *, keep_partial: bool = False) -> Iterator[Path]:
    """Yield where to write ``path``; it appears under its name only once whole."""
    with OutputFiles(keep_partial=keep_partial) as files, files.writing(path) as partial:
        yield partial


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """``data`` into ``path`` (an ``OSError`` names the file)."""
    with naming(path), open(path, "wb") as handle:
        handle.write(data)


def table_format(path: str | os.PathLike[str], allowed: Sequence[str] | None = None) -> str:
    """``"csv"``, ``"tsv"`` or ``"parquet"``: the format ``path``'s extension names, or a
    :class:`TableFormatError` naming the extensions this output takes (``allowed``
    formats; default all)."""
    allowed = tuple(allowed or dict.fromkeys(TABLE_FORMATS.values()))
    suffix = Path(path).suffix.lower()
    found = TABLE_FORMATS.get(suffix)
    if found is None or found not in allowed:
        names = ", ".join(s for s, f in TABLE_FORMATS.items() if f in allowed)
        raise TableFormatError(
            f"{path}: the format of a table follows its extension, and "
            f"{suffix or 'no extension'!r} is not one it is written in; name it {names}"
        )
    return found


class TableWriter:
    """Rows appended chunk by chunk to ``path`` as ``fmt`` (CSV and TSV: the header
    once; Parquet: one row group per chunk, every chunk in the first one's schema).
    Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], fmt: str, *, numeric: Iterable[str] = ()):
        #: columns stored as numbers even when the first chunk has none in them (Parquet)
        self.numeric = set(numeric)
        if fmt not in ("csv", "tsv", "parquet"):
            raise TableFormatError(f"unknown table format {fmt!r}")
        self.path, self.fmt = Path(path), fmt
        self.rows = 0
        self._parquet: Any = None
        self._schema: Any = None
        self._started = False

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, frame: pd.DataFrame) -> None:
        with naming(self.path):
            if self.fmt == "parquet":
                self._write_parquet(frame)
            else:
                frame.to_csv(
                    self.path, mode="a" if self._started else "w", header=not self._started,
                    index=False, sep="\t" if self.fmt == "tsv" else ",",
                )  # fmt: skip
        self._started = True
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._schema is None:
            # One schema for every chunk, fixed by the first: numbers stay float64, all
            # else is text (a column blank in the first chunk, e.g. all rows failed, must
            # still take the values of later ones).
            self._schema = pa.schema(
                [(str(c), _arrow_type(frame[c], str(c) in self.numeric)) for c in frame]
            )
            self._parquet = pq.ParquetWriter(self.path, self._schema)
        if [str(c) for c in frame.columns] != self._schema.names:
            raise TableFormatError(f"{self.path}: a chunk with other columns than the first")
        arrays = [
            _arrow_array(frame[c], field.type)
            for c, field in zip(frame.columns, self._schema, strict=True)
        ]
        self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        if self._parquet is not None:
            writer, self._parquet = self._parquet, None
            with naming(self.path):
                writer.close()


def _arrow_type(column: pd.Series, numeric: bool) -> Any:
    """float64 for numbers, bool for booleans, text for everything else."""
    import pandas as pd
    import pyarrow as pa

    if pd.api.types.is_bool_dtype(column) and not numeric:
        return pa.bool_()
    if numeric or pd.api.types.is_numeric_dtype(column):
        return pa.float64()
    return pa.string()


def _arrow_array(column: pd.Series, kind: Any) -> Any:
    """``column`` as an Arrow array of ``kind`` (blanks: null; text that is no number: null)."""
    import pandas as pd
    import pyarrow as pa

    if kind == pa.float64():
        values = pd.to_numeric(column.replace("", None), errors="coerce").astype("float64")
        return pa.array(values.to_numpy(), type=kind, from_pandas=True)
    if kind == pa.bool_():
        return pa.array(column.replace("", None).astype("boolean"), type=kind, from_pandas=True)
    texts = [
        None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
        for v in column.tolist()
    ]
    return pa.array(texts, type=kind)
