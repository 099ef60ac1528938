"""Readers that turn a corpus on disk into the utterance table (see table.py)."""

from emofuse.corpus.detect import LAYOUTS, detect_layout, read_corpus
from emofuse.corpus.scan import CorpusError
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
    "LAYOUTS",
    "CorpusError",
    "CorpusTableError",
    "ScanResult",
    "detect_layout",
    "read_corpus",
    "read_table",
    "validate_table",
    "write_table",
]
