"""The utterance table: one row per clip, the contract between every reader and the
rest of the pipeline, plus the problems report that a scan produces beside it."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emofuse.corpus.files import non_regular_kind

#: Columns of the utterance table, in order, with their meaning.
COLUMNS: dict[str, str] = {
    "id": "unique utterance id (str)",
    "audio": "absolute path to the audio file (str)",
    "text": "transcript (str, may be empty only where a corpus has no text)",
    "label": "canonical class name (str)",
    "speaker": "the person speaking (str; '' when unknown)",
    "script": "id of the text read (str; same script = same sentence)",
    "duration_s": "audio duration in seconds from the file header (float)",
    "source_split": "the corpus's own split, e.g. 'train'/'validation' ('' when none)",
}
PROBLEM_COLUMNS = ("file", "reason")
LABELS_METADATA_KEY = b"emofuse.labels"


class CorpusTableError(ValueError):
    """A table that does not have the shape every later step relies on."""


@dataclass
class ScanResult:
    """What a reader returns: the good rows, the bad files (never silently dropped)
    and the corpus's class order."""

    table: pd.DataFrame
    problems: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(PROBLEM_COLUMNS))
    )
    labels: list[str] = field(default_factory=list)
    #: What the reader decided on the user's behalf (e.g. which manifest columns it used).
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.table)} utterances, {len(self.problems)} problems"]
        lines.extend(f"note: {note}" for note in self.notes)
        if len(self.table):
            counts = self.table["label"].value_counts()
            lines.append(
                "labels: " + ", ".join(f"{lab} {counts.get(lab, 0)}" for lab in self.labels)
            )
            lines.append(
                f"speakers: {self.table['speaker'].nunique()}, "
                f"scripts: {self.table['script'].nunique()}, "
                f"hours: {self.table['duration_s'].sum() / 3600:.2f}"
            )
        if len(self.problems):
            reasons = self.problems["reason"].str.split(":").str[0].value_counts()
            lines.append("problems: " + "; ".join(f"{r} ({n})" for r, n in reasons.items()))
        return "\n".join(lines)


def require_columns(
    table: pd.DataFrame,
    columns: list[str],
    what: str,
    error: type[Exception] = CorpusTableError,
) -> None:
    """Raise ``error`` naming ``what`` needs the ``columns`` the table lacks, and the ones
    it has."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise error(
            f"{what}: the table has no {', '.join(missing)} column(s); it has {list(table.columns)}"
        )


def attach_parts(table: pd.DataFrame, split: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """``table`` with the ``part`` of each id taken from ``split`` (a split file's ``id``
    and ``part`` columns, read from ``source``); ids the split does not name get ``""``."""
    require_columns(split, ["id", "part"], f"{source} (a split file has id and part)")
    split = split[["id", "part"]].astype(str)
    if split["id"].duplicated().any():
        raise CorpusTableError(f"{source}: an id appears twice in the split file")
    out = table.drop(columns=["part"], errors="ignore").merge(split, on="id", how="left")
    out["part"] = out["part"].fillna("")
    if not (out["part"] != "").any():
        raise CorpusTableError(f"{source}: no id of the split file is in the corpus")
    return out


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="float64" if c == "duration_s" else "object") for c in COLUMNS}
    )


def validate_table(table: pd.DataFrame, *, source: str = "table") -> pd.DataFrame:
    """Check columns, types and id uniqueness; return the table with columns in order."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise CorpusTableError(f"{source}: missing columns {missing}; expected {list(COLUMNS)}")
    dupes = table["id"][table["id"].duplicated()].unique()
    if len(dupes):
        raise CorpusTableError(f"{source}: duplicate utterance ids, e.g. {list(dupes[:5])}")
    out = table.copy()
    for c in COLUMNS:
        if c == "duration_s":
            out[c] = _durations(out[c], source)
        else:
            out[c] = out[c].fillna("").astype(str)
    extra = [c for c in out.columns if c not in COLUMNS]
    return out[list(COLUMNS) + extra].reset_index(drop=True)


def _durations(values: pd.Series, source: str) -> pd.Series:
    """Durations as float64; an empty cell (a NaN written to CSV) reads back as NaN,
    anything else that is not a number is an error naming the table and the rows."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        examples = [repr(v) for v in values[bad].unique()[:3]]
        raise CorpusTableError(
            f"{source}: {int(bad.sum())} rows have a duration_s that is not a number, "
            f"e.g. {', '.join(examples)}"
        )
    return numbers


def write_table(table: pd.DataFrame, path: str | Path, labels: list[str] | None = None) -> Path:
    """Write the table as Parquet (or CSV by suffix), keeping the class order."""
    from emofuse.labels import label_order

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = validate_table(table, source=str(path))
    labels = labels or label_order(table["label"])
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".csv":
        table.to_csv(tmp, index=False)
        path.with_name(path.name + ".labels.json").write_text(
            json.dumps(labels, ensure_ascii=False)
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(table, preserve_index=False)
        meta = dict(arrow.schema.metadata or {})
        meta[LABELS_METADATA_KEY] = json.dumps(labels, ensure_ascii=False).encode()
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    tmp.replace(path)
    return path


def read_table(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a table written by :func:`write_table`; returns (table, class order). Labels
    that differ only in case, spacing or Unicode form are folded into one
    (:func:`emofuse.labels.fold_labels`) with a :class:`~emofuse.labels.LabelsFoldedWarning`."""
    from emofuse.labels import LabelsFoldedWarning, fold_label_list, fold_labels, label_order

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such corpus table (make one with `emofuse prepare`)")
    if kind := non_regular_kind(path):  # a named pipe would block the reader forever
        raise CorpusTableError(f"{path}: not a corpus table file ({kind})")
    try:
        table, labels = _read_table_file(path)
    except CorpusTableError:
        raise
    except Exception as error:  # pyarrow / pandas / json each raise their own kinds
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CorpusTableError(
            f"{path}: unreadable corpus table ({type(error).__name__}: {detail})"
        ) from error
    table = validate_table(table, source=str(path))
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    ):
        raise CorpusTableError(f"{path}: its label list is not a list of names: {labels!r:.80}")
    labels = labels or label_order(table["label"])
    folding = fold_labels(table["label"])
    if folding.merges:  # a table not made by `prepare` (which folds): never split a class
        table["label"] = table["label"].map(folding.mapping)
        labels = fold_label_list(labels, folding)
        warnings.warn(f"{path}: " + "; ".join(folding.notes()), LabelsFoldedWarning, stacklevel=2)
    return table, labels


def _read_table_file(path: Path) -> tuple[pd.DataFrame, list[str] | None]:
    labels = None
    if path.suffix == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        side = path.with_name(path.name + ".labels.json")
        if side.exists():
            try:
                labels = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise CorpusTableError(f"{side}: unreadable label list ({error})") from error
    else:
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        raw = (arrow.schema.metadata or {}).get(LABELS_METADATA_KEY)
        labels = json.loads(raw) if raw else None
        table = arrow.to_pandas()
    return table, labels
