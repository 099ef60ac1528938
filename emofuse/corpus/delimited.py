"""Reading a CSV or TSV that a person made: when it cannot be read as asked, say why in
their terms (which encoding it is likely in, which separator it uses, which columns that
gives) and what to do, instead of the parser's "'utf-8' codec can't decode byte 0xbf" or
"Expected 1 fields in line 26".

Both `prepare` (:mod:`emofuse.corpus.manifest`) and `predict --manifest`
(:mod:`emofuse.predict.manifest`) read their CSV/TSV files through
:func:`read_delimited`. Nothing is guessed silently: a file in another encoding or with
another separator is refused with the fix, never read differently from what was asked.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from emofuse.corpus.scan import CorpusError

#: Separators a person's table may use, and their names in messages.
SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "vertical bar"}
#: Encodings a file that is not UTF-8 is tried in, with who writes them.
LIKELY_ENCODINGS = (
    ("utf-16", "UTF-16 (Excel's 'Unicode text')"),
    ("cp949", "cp949 (Korean Windows, e.g. a CSV saved by Excel)"),
)
#: Bytes of the file tried in each encoding when UTF-8 fails.
_SAMPLE_BYTES = 1 << 20
_EXPECTED_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


class ManifestFormatError(CorpusError):
    """A CSV/TSV file that cannot be read as asked; the message names the likely cause
    (encoding, separator) and the fix."""


def separator_name(sep: str) -> str:
    return f"{SEPARATORS.get(sep, 'separator')} ({sep!r})"


def read_delimited(
    path: Path, sep: str, *, chunksize: int | None = None, **read_options: object
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """``path`` read as strings (``keep_default_na=False``, a UTF-8 byte-order mark
    tolerated; ``read_options`` go to :func:`pandas.read_csv`), all at once or
    ``chunksize`` rows at a time; a :class:`ManifestFormatError` naming the likely
    encoding or separator when it cannot be read so."""
    check_header(path, sep)
    options = {"sep": sep, "dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    options.update(read_options)
    if chunksize is None:
        try:
            return pd.read_csv(path, **options)
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise explain(path, sep, error) from error
    return _chunks(path, sep, chunksize, options)


def _chunks(path: Path, sep: str, rows: int, options: dict) -> Iterator[pd.DataFrame]:
    try:
        yield from pd.read_csv(path, chunksize=rows, **options)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise explain(path, sep, error) from error


def check_header(path: Path, sep: str) -> None:
    """Refuse up front a file whose first line is not UTF-8, or that splits into columns
    on another separator but not on ``sep`` (a semicolon CSV read as a comma one would be
    one column, or fail at the first line with a comma in it)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.readline(1 << 16)
    except OSError:
        return  # the reader reports a file it cannot open in its own words
    try:
        header = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise explain(path, sep, error) from error
    if sep in header:
        return
    for other in SEPARATORS:
        if other != sep and len(header.split(other)) > 1:
            columns = [c.strip() for c in header.rstrip("\r\n").split(other)]
            raise ManifestFormatError(
                f"{path}: the header has no {separator_name(sep)} but splits on "
                f"{separator_name(other)} into {len(columns)} columns: "
                f"{', '.join(columns)}; save it {_saved_with(sep)}"
            )


def _saved_with(sep: str) -> str:
    if sep == "\t":
        return "with tabs between columns (or as .csv with commas)"
    return "with commas between columns (or with tabs, named .tsv)"


def _is_utf16(raw: bytes) -> bool:
    return raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def explain(path: Path, sep: str, error: Exception) -> ManifestFormatError:
    """The error a reader raises for ``error`` (a decode or parse error) on ``path``."""
    if isinstance(error, UnicodeDecodeError):
        return ManifestFormatError(f"{path}: {_encoding_advice(path, error)}")
    detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    match = _EXPECTED_FIELDS.search(str(error))
    columns = _header_columns(path, sep)
    if match:
        expected, line, saw = match.groups()
        detail = (
            f"line {line} has {saw} fields where the header has {expected} "
            f"({separator_name(sep)}-separated; columns: {', '.join(columns)}): a value "
            f"with a {SEPARATORS.get(sep, 'separator')} in it must be in double quotes"
        )
    return ManifestFormatError(f"{path}: cannot read it as {_kind(sep)}: {detail}")


def _kind(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV"


def _header_columns(path: Path, sep: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            return [c.strip() for c in handle.readline().rstrip("\r\n").split(sep)]
    except OSError:
        return []


def _encoding_advice(path: Path, error: UnicodeDecodeError) -> str:
    """Why the bytes are not UTF-8 and what they likely are, with the fix."""
    try:
        with open(path, "rb") as handle:
            sample = handle.read(_SAMPLE_BYTES)
    except OSError:
        sample = b""
    where = f"byte 0x{error.object[error.start : error.start + 1].hex()}"
    if _is_utf16(sample):
        where = "a UTF-16 byte-order mark"
    else:
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as first:
            if first.start < len(sample) - 3:  # not a character cut at the sample's end
                line = sample[: first.start].count(b"\n") + 1
                where = f"byte 0x{sample[first.start]:02x} on line {line}"
    found = _likely_encoding(sample)
    fix = "save it as UTF-8 (Excel: 'CSV UTF-8'), or convert it: iconv -f"
    if found is None:
        return f"not UTF-8 text ({where}); {fix} ENCODING -t utf-8 IN > OUT"
    encoding, who = found
    out = f"{path.stem}-utf8{path.suffix}"
    return (
        f"not UTF-8 text ({where}); it reads as {who}: "
        f"{fix} {encoding} -t utf-8 {path.name} > {out}"
    )


def _likely_encoding(sample: bytes) -> tuple[str, str] | None:
    """The first of :data:`LIKELY_ENCODINGS` the sample reads in plausibly: UTF-16 by its
    byte-order mark, cp949 when it decodes and its non-ASCII letters are mostly Hangul
    (cp949 decodes much Western text too, into nonsense)."""
    if _is_utf16(sample):
        return LIKELY_ENCODINGS[0]
    try:
        text = sample.decode("cp949")
    except UnicodeDecodeError as error:
        if error.start < len(sample) - 1:  # not just a character cut at the sample's end
            return None
        text = sample[: error.start].decode("cp949")
    wide = [c for c in text if ord(c) > 127]
    hangul = sum(1 for c in wide if "\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e")
    return LIKELY_ENCODINGS[1] if wide and hangul >= 0.8 * len(wide) else None
