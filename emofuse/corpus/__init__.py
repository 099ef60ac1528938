"""Readers that turn a corpus on disk into the utterance table (see table.py)."""

from emofuse.corpus.table import (
    COLUMNS,
    CorpusTableError,
    ScanResult,
    read_table,
    validate_table,
    write_table,
)

__all__ = [
    "COLUMNS",
    "CorpusTableError",
    "ScanResult",
    "read_table",
    "validate_table",
    "write_table",
]
