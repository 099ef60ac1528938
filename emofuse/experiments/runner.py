"""Run a grid: corpus -> splits (or folds) -> features once per encoder -> one trained
head per cell -> results.csv, tables, plots and report.md under the output folder.

Order of work, and why:

1. The corpus is read once (``source = "demo"`` makes the demo corpus in
   ``<output>/demo-corpus`` the first time).
2. Every split strategy is applied once (CV strategies give one split per fold); each
   split is written to ``<output>/splits/`` so any figure can be traced to its test part.
3. The cells still to run are planned and their training rows sampled (cheap, table
   only), so features are extracted only for clips some cell uses.
4. Features: one :class:`~emofuse.features.FeatureStore` (``<output>/features`` unless
   ``encoders.store`` says otherwise). Speech vectors depend only on the clip, so each
   speech encoder runs once over the union of clips any cell needs. A fitted text
   encoder (``kiwi-tfidf``) is fitted once per split/fold on that split's *whole* train
   part, before per-cell sampling: every cell of a split reads the same text vectors,
   and no test or val sentence ever shapes the vocabulary. A cell trained on 50 clips
   per emotion therefore uses an IDF computed from the full train part (a property of
   the featuriser, like a pretrained encoder's vocabulary, not of the 50 clips).
5. Cells train heads on cached arrays (in parallel processes with ``output.jobs``);
   each finished cell appends one flushed row to ``results.csv``. A rerun skips every
   cell whose id is already there, so an interrupted grid resumes and a finished grid
   returns at once.

A cell id is a stable hash of everything that changes its figure (corpus, split
settings, fold, modality, encoders, per_label, order, seed, sampling and training
settings), not of the output folder or the number of jobs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.experiments.config import CV_STRATEGIES, GridConfig

RESULT_COLUMNS = (
    "cell_id",
    "split_strategy",
    "fold",
    "modality",
    "speech_encoder",
    "text_encoder",
    "per_label",
    "order",
    "seed",
    "n_train",
    "n_val",
    "n_test",
    "uar",
    "accuracy",
    "macro_f1",
    "best_epoch",
    "seconds",
    "train_ids_file",
)
RESULTS_FILE = "results.csv"
CELLS_DIR = "cells"
SPLITS_DIR = "splits"
BANK_DIR = ".bank"
DEMO_DIR = "demo-corpus"
_USES = {"speech": ("speech",), "text": ("text",), "both": ("speech", "text")}


class GridRunError(RuntimeError):
    """A grid that cannot run (bad corpus, impossible split) or cells that failed."""


# ------------------------------------------------------------------------------ cells


@dataclass(frozen=True)
class Cell:
    """One point of the grid: what to train on and how."""

    split_strategy: str
    fold: str  # "" for a single split; the fold's name for kfold / logo
    modality: str
    speech_encoder: str  # "" when the modality reads no speech
    text_encoder: str  # "" when the modality reads no text
    per_label: int | None  # None: the whole train part
    order: str
    seed: int

    @property
    def split_key(self) -> str:
        return split_key(self.split_strategy, self.fold)

    @property
    def per_label_text(self) -> str:
        return "all" if self.per_label is None else str(self.per_label)

    def order_by(self, config: GridConfig) -> str:
        return config.grid.text_order_by if self.modality == "text" else config.grid.speech_order_by

    def settings(self, config: GridConfig) -> dict[str, Any]:
        """Everything that changes this cell's figure (the input of its id)."""
        return {
            "corpus": corpus_identity(config),
            "split": split_identity(config, self.split_strategy),
            "fold": self.fold,
            "modality": self.modality,
            "speech_encoder": self.speech_encoder,
            "text_encoder": self.text_encoder,
            "float16": config.encoders.float16,
            "per_label": self.per_label_text,
            "order": self.order,
            "order_by": self.order_by(config),
            "dedupe_text": config.grid.dedupe_text,
            "seed": self.seed,
            "train": asdict(config.train),
        }

    def cell_id(self, config: GridConfig) -> str:
        from emofuse.encoders.base import stable_hash

        return stable_hash(self.settings(config), chars=12)


def split_key(strategy: str, fold: str) -> str:
    return f"{strategy}__{fold}" if fold else strategy


def corpus_identity(config: GridConfig) -> dict[str, Any]:
    c = config.corpus
    ident: dict[str, Any] = {"labels": list(c.labels)}
    if c.source == "demo":
        ident["source"] = "demo"
        ident["demo"] = [c.demo_speakers, c.demo_scripts_per_emotion, c.demo_seed]
    else:
        ident["source"] = str(config.resolve(c.source))
        ident["layout"] = c.layout
    return ident


def split_identity(config: GridConfig, strategy: str) -> dict[str, Any]:
    s = config.split
    if strategy == "kfold":
        return {"strategy": strategy, "k": s.k, "group": s.group, "val": s.val_size, "seed": s.seed}
    if strategy == "logo":
        return {"strategy": strategy, "group": s.group, "val": s.val_size, "seed": s.seed}
    return {"strategy": strategy, "test": s.test_size, "val": s.val_size, "seed": s.seed}


def encoder_pairs(config: GridConfig, modality: str) -> list[tuple[str, str]]:
    speech = config.encoders.speech if "speech" in _USES[modality] else ("",)
    text = config.encoders.text if "text" in _USES[modality] else ("",)
    return [(s, t) for s in speech for t in text]


def plan_cells(config: GridConfig, folds: dict[str, Sequence[str]]) -> list[Cell]:
    """Every cell of the grid, in a stable order. ``folds`` maps each split strategy to
    its fold names (``[""]`` for a single split)."""
    cells = []
    for strategy in config.split.strategies:
        for fold in folds[strategy]:
            for modality in config.grid.modalities:
                for speech, text in encoder_pairs(config, modality):
                    for per_label in config.grid.per_label:
                        for order in config.grid.orders:
                            for seed in config.grid.seeds:
                                cells.append(
                                    Cell(
                                        strategy,
                                        fold,
                                        modality,
                                        speech,
                                        text,
                                        per_label,
                                        order,
                                        seed,
                                    )
                                )
    return cells


# -------------------------------------------------------------------------- results file


class ResultsFile:
    """``results.csv``: one row per finished cell, appended and flushed as cells finish.

    A kill can leave a half-written last line; it is cut off when the file is opened for
    appending (that cell simply runs again)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        """Complete rows only (a row whose numbers do not parse is ignored), last row per
        cell id wins."""
        if not self.path.exists() or b"\n" not in self.path.read_bytes()[:4096]:
            return pd.DataFrame(columns=list(RESULT_COLUMNS))  # new, empty or header cut short
        rows = []
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return pd.DataFrame(columns=list(RESULT_COLUMNS))
            missing = [c for c in RESULT_COLUMNS if c not in header]
            if missing:
                raise GridRunError(
                    f"{self.path}: not a results file of this version (no {', '.join(missing)} "
                    "column); move it away or choose another output folder"
                )
            for values in reader:
                if len(values) != len(header):
                    continue
                row = dict(zip(header, values, strict=True))
                try:
                    for key in ("uar", "accuracy", "macro_f1", "seconds"):
                        row[key] = float(row[key])
                    for key in ("seed", "n_train", "n_val", "n_test", "best_epoch"):
                        row[key] = int(row[key])
                except ValueError:
                    continue
                rows.append(row)
        frame = pd.DataFrame(rows, columns=header)
        if len(frame):
            frame = frame.drop_duplicates("cell_id", keep="last").reset_index(drop=True)
        for key in ("cell_id", "split_strategy", "fold", "modality", "speech_encoder",
                    "text_encoder", "per_label", "order", "train_ids_file"):  # fmt: skip
            frame[key] = frame[key].astype(object)
        return frame

    def finished(self) -> set[str]:
        return set(self.read()["cell_id"])

    def _repair(self) -> None:
        """Cut a half-written last line; write the header into a new or empty file (also
        one whose only line, the header, was cut short)."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb+") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 1))
                if handle.read(1) == b"\n":
                    return
                handle.truncate(self.path.read_bytes().rfind(b"\n") + 1)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(RESULT_COLUMNS)

    def append(self, row: dict[str, Any]) -> None:
        self._repair()
        values = ["" if row.get(c) is None else row[c] for c in RESULT_COLUMNS]
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(values)
            handle.flush()
            os.fsync(handle.fileno())


# ------------------------------------------------------------------------------- corpus


CORPUS_DIGEST_FILE = "corpus-digest.json"


def corpus_digest(table: pd.DataFrame) -> str:
    """A hash of what the cells learn from: ids, labels, texts, audio paths, durations."""
    import hashlib

    columns = ["id", "label", "text", "audio", "speaker", "duration_s"]
    hashed = pd.util.hash_pandas_object(table[columns].sort_values("id"), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def guard_corpus_identity(table: pd.DataFrame, out_dir: Path) -> None:
    """Refuse to resume a grid whose corpus changed in place: its finished cells would
    be skipped and stale figures reported as new."""
    path = out_dir / CORPUS_DIGEST_FILE
    digest = {"digest": corpus_digest(table), "rows": len(table)}
    if path.exists() and (out_dir / RESULTS_FILE).exists():
        recorded = json.loads(path.read_text())
        if recorded.get("digest") != digest["digest"]:
            raise GridRunError(
                f"{out_dir / RESULTS_FILE}: made from another version of the corpus "
                f"({recorded.get('rows')} rows then, {digest['rows']} now, different content); "
                "use another output folder, or delete results.csv to start the grid over"
            )
    path.write_text(json.dumps(digest))


def load_corpus(
    config: GridConfig, out_dir: Path, *, progress: bool = True, create: bool = True
) -> tuple[pd.DataFrame, list[str]] | None:
    """The grid's utterance table (index 0..n-1) and class order; ``None`` when the demo
    corpus does not exist yet and ``create`` is False (dry runs write nothing)."""
    from emofuse.corpus import CorpusError, CorpusTableError, read_corpus, read_table
    from emofuse.corpus.table import COLUMNS

    c = config.corpus
    try:
        if c.source == "demo":
            root = out_dir / DEMO_DIR
            marker = out_dir / f"{DEMO_DIR}.json"
            params = {
                "seed": c.demo_seed,
                "speakers": c.demo_speakers,
                "scripts_per_emotion": c.demo_scripts_per_emotion,
            }
            made = marker.exists() and json.loads(marker.read_text()) == params
            if not made:
                if not create:
                    return None
                from emofuse.demo import make_demo_corpus

                out_dir.mkdir(parents=True, exist_ok=True)
                make_demo_corpus(root, overwrite=True, progress=progress, **params)
                marker.write_text(json.dumps(params))
            scan = read_corpus(root, layout="aihub466", progress=False)
            table, labels = scan.table, list(scan.labels)
        else:
            path = config.resolve(c.source)
            is_table = path.suffix == ".parquet" or (
                path.suffix == ".csv"
                and path.is_file()
                and set(COLUMNS) <= set(pd.read_csv(path, nrows=0).columns)
            )
            if is_table:
                table, labels = read_table(path)
            else:
                scan = read_corpus(path, layout=c.layout, progress=progress)
                if len(scan.problems):
                    print(
                        f"{path}: {len(scan.problems)} files skipped "
                        f"(e.g. {scan.problems['reason'].iloc[0]})",
                        file=sys.stderr,
                    )
                table, labels = scan.table, list(scan.labels)
    except (CorpusError, CorpusTableError, FileNotFoundError) as err:
        raise GridRunError(f"corpus.source: {err}") from err
    if c.labels:
        unknown = [label for label in c.labels if label not in set(table["label"])]
        if unknown:
            raise GridRunError(
                f"corpus.labels: {unknown} not in the corpus (it has {sorted(set(table['label']))})"
            )
        table = table[table["label"].isin(c.labels)]
        labels = list(c.labels)
    else:
        present = set(table["label"])
        labels = [label for label in labels if label in present]
    if not len(table):
        raise GridRunError(f"corpus.source: {c.source} gave no clips")
    return table.reset_index(drop=True), labels


# ------------------------------------------------------------------------------- splits


@dataclass
class SplitView:
    strategy: str
    fold: str
    part: np.ndarray  # over table rows: train / val / test, "" for rows the split dropped

    @property
    def key(self) -> str:
        return split_key(self.strategy, self.fold)

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.part == name)


def make_splits(table: pd.DataFrame, config: GridConfig) -> list[SplitView]:
    """Every split of the grid (one per fold for CV strategies), checked for group
    leakage where the strategy promises none."""
    from emofuse.splits import SplitError, assign_split, cross_validation_folds

    s = config.split
    views = []
    for strategy in s.strategies:
        try:
            if strategy in CV_STRATEGIES:
                folds = cross_validation_folds(
                    table, strategy, k=s.k, group=s.group, seed=s.seed, val_size=s.val_size
                )
                for fold in folds:
                    part = fold.part.reindex(table.index).fillna("").astype(str).to_numpy()
                    views.append(SplitView(strategy, fold.name, part.astype(object)))
            else:
                split = assign_split(
                    table, strategy, test_size=s.test_size, val_size=s.val_size, seed=s.seed
                )
                part = split["part"].reindex(table.index).fillna("").astype(str).to_numpy()
                views.append(SplitView(strategy, "", part.astype(object)))
        except SplitError as err:
            raise GridRunError(
                f"split.strategies: {strategy!r} cannot split this corpus: {err}"
            ) from err
    for view in views:
        check_disjoint(table, view, config)
    return views


def check_disjoint(table: pd.DataFrame, view: SplitView, config: GridConfig) -> None:
    """Raise if a group the strategy keeps apart (speakers, or the CV group) is in two
    parts: a figure from such a split would silently include leakage."""
    column = {"speaker": "speaker", "speaker+script": "speaker"}.get(view.strategy)
    if view.strategy in CV_STRATEGIES:
        column = config.split.group
    if column is None or column not in table.columns:
        return
    values = table[column].astype(str).to_numpy()
    seen: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for value in np.unique(values[view.part == name]):
            if value in seen and seen[value] != name:
                raise GridRunError(
                    f"split {view.key}: {column} {value!r} is in both {seen[value]} and {name}"
                )
            seen[value] = name


def write_split(table: pd.DataFrame, view: SplitView, out_dir: Path) -> Path:
    path = out_dir / SPLITS_DIR / f"{view.key}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        pd.DataFrame({"id": table["id"], "part": view.part}).to_csv(tmp, index=False)
        tmp.replace(path)
    return path


# ------------------------------------------------------------------------ feature bank


@dataclass
class BankEntry:
    """Vectors of one encoder for some table rows: ``rows`` (sorted positions) -> matrix."""

    rows: np.ndarray
    matrix: np.ndarray | None = None
    path: str | None = None  # .npy file for worker processes

    def take(self, positions: np.ndarray) -> np.ndarray:
        matrix = self.matrix if self.matrix is not None else _mapped(self.path)
        where = np.searchsorted(self.rows, positions)
        return np.asarray(matrix[where], dtype=np.float32)

    def has(self, positions: np.ndarray) -> np.ndarray:
        if not len(self.rows):
            return np.zeros(len(positions), dtype=bool)
        where = np.minimum(np.searchsorted(self.rows, positions), len(self.rows) - 1)
        return self.rows[where] == positions


_MAPPED: dict[str, np.ndarray] = {}


def _mapped(path: str | None) -> np.ndarray:
    assert path is not None
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r")
    return _MAPPED[path]


def bank_key(modality: str, encoder: str, split: str = "") -> str:
    return f"{modality}|{encoder}|{split}"


# --------------------------------------------------------------------------- cell tasks


@dataclass
class CellTask:
    cell: Cell
    cell_id: str
    blocks: list[tuple[str, str]]  # (modality, bank key), speech first
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    y: dict[str, np.ndarray]
    labels: list[str]
    train_config: dict[str, Any]
    train_ids_file: str
    notes: list[str] = field(default_factory=list)


def run_task(task: CellTask, bank: dict[str, BankEntry]) -> dict[str, Any]:
    """Train one head on cached vectors and score it on the test part."""
    from emofuse.metrics import compute_metrics
    from emofuse.train import TrainConfig, fit_head

    start = time.perf_counter()

    def features(rows: np.ndarray) -> np.ndarray:
        return np.hstack([bank[key].take(rows) for _, key in task.blocks])

    dims = {m: int(bank[key].take(task.train[:1]).shape[1]) for m, key in task.blocks}
    config = TrainConfig(**task.train_config)
    trained = fit_head(
        features(task.train),
        task.y["train"],
        features(task.val) if len(task.val) else None,
        task.y["val"] if len(task.val) else None,
        n_classes=len(task.labels),
        config=config,
        input_dims=dims,
        progress=False,
    )
    predicted = trained.predict(features(task.test))
    metrics = compute_metrics(task.y["test"], predicted, task.labels)
    return {
        "metrics": metrics,
        "best_epoch": int(trained.best_epoch),
        "seconds": time.perf_counter() - start,
    }


def _worker_init(bank: dict[str, BankEntry]) -> None:
    import torch

    torch.set_num_threads(1)
    global _WORKER_BANK
    _WORKER_BANK = bank


_WORKER_BANK: dict[str, BankEntry] = {}


def _worker_run(task: CellTask) -> dict[str, Any]:
    return run_task(task, _WORKER_BANK)


# ------------------------------------------------------------------------------ the grid


@dataclass
class GridRun:
    """What a call of :func:`run_grid` did and where its outputs are."""

    output_dir: Path
    results: pd.DataFrame  # rows of this grid's cells only
    cells: int
    ran: int
    skipped: int
    failed: list[tuple[str, str]]  # (cell_id, error)
    seconds: dict[str, float]
    tables: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None
    notes: list[str] = field(default_factory=list)


def fold_names(config: GridConfig, table: pd.DataFrame | None) -> dict[str, list[str]]:
    """Fold names per strategy without running a split where possible (dry runs)."""
    out: dict[str, list[str]] = {}
    for strategy in config.split.strategies:
        if strategy == "kfold":
            out[strategy] = [f"fold{i + 1}" for i in range(config.split.k)]
        elif strategy == "logo":
            if table is None or config.split.group not in table.columns:
                out[strategy] = []
            else:
                values = table[config.split.group].fillna("").astype(str).str.strip()
                out[strategy] = [str(v) for v in pd.unique(values.to_numpy())]
        else:
            out[strategy] = [""]
    return out


def run_grid(
    config: GridConfig,
    *,
    output_dir: str | Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
    write_reports: bool = True,
    max_cells: int | None = None,
) -> GridRun:
    """Run every unfinished cell of ``config``; write results, tables, plots, report.

    ``max_cells`` stops after that many cells (for tests and benchmarks; the rest run on
    the next call). Cells that raise are reported in ``GridRun.failed`` and left out of
    results.csv, so the next call retries them.
    """
    out = Path(output_dir).expanduser().resolve() if output_dir else config.output_dir
    jobs = jobs or config.output.jobs
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    loaded = load_corpus(config, out, progress=progress)
    assert loaded is not None
    table, labels = loaded
    guard_corpus_identity(table, out)
    timings["corpus"] = time.perf_counter() - clock

    clock = time.perf_counter()
    views = make_splits(table, config)
    for view in views:
        write_split(table, view, out)
    folds: dict[str, list[str]] = {s: [] for s in config.split.strategies}
    for view in views:
        folds[view.strategy].append(view.fold)
    cells = plan_cells(config, folds)
    ids = [cell.cell_id(config) for cell in cells]
    results_file = ResultsFile(out / RESULTS_FILE)
    done = results_file.finished()
    todo = [(c, i) for c, i in zip(cells, ids, strict=True) if i not in done]
    if max_cells is not None:
        todo = todo[:max_cells]
    timings["split+plan"] = time.perf_counter() - clock

    failed: list[tuple[str, str]] = []
    notes: list[str] = []
    if todo:
        tasks, bank, extract_notes, extract_s = _prepare(
            config, table, labels, views, todo, out, progress
        )
        notes += extract_notes
        timings["features"] = extract_s
        clock = time.perf_counter()
        failed = _execute(tasks, bank, results_file, out, jobs, progress)
        timings["cells"] = time.perf_counter() - clock
        shutil.rmtree(out / BANK_DIR, ignore_errors=True)

    frame = results_file.read()
    frame = frame[frame["cell_id"].isin(set(ids))].reset_index(drop=True)
    run = GridRun(
        output_dir=out,
        results=frame,
        cells=len(cells),
        ran=len(todo) - len(failed),
        skipped=len(cells) - len(todo) if max_cells is None else len(done & set(ids)),
        failed=failed,
        seconds=timings,
        notes=notes,
    )
    report = out / "report.md"
    fresh = (
        not todo and report.exists() and report.stat().st_mtime >= results_file.path.stat().st_mtime
    )
    if fresh:  # nothing new since the last report: a finished grid returns at once
        run.report = report
        run.tables = sorted((out / "tables").glob("*.md"))
        run.plots = sorted((out / "plots").glob("*.png"))
    elif write_reports and len(frame):
        clock = time.perf_counter()
        write_outputs(run, config, n_classes=len(labels))
        timings["reports"] = time.perf_counter() - clock
    return run


def _sample_rows(
    table: pd.DataFrame, view: SplitView, cell: Cell, config: GridConfig
) -> tuple[np.ndarray, list[str]]:
    from emofuse.sampling import SamplingShortfallWarning, sample_per_label

    train = table.iloc[view.rows("train")].assign(_pos=view.rows("train"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingShortfallWarning)
        sampled = sample_per_label(
            train,
            cell.per_label,
            order=cell.order,
            by=cell.order_by(config),
            dedupe_text=config.grid.dedupe_text,
            seed=cell.seed,
        )
    notes = []
    short = sampled.attrs.get("shortfall") or {}
    if short:
        notes.append(
            f"per_label={cell.per_label_text} on {view.key}: "
            + ", ".join(f"{k} has {v}" for k, v in short.items())
        )
    return sampled["_pos"].to_numpy(dtype=np.int64), notes


def _prepare(
    config: GridConfig,
    table: pd.DataFrame,
    labels: list[str],
    views: list[SplitView],
    todo: list[tuple[Cell, str]],
    out: Path,
    progress: bool,
) -> tuple[list[CellTask], dict[str, BankEntry], list[str], float]:
    """Sample every cell's rows, extract the features they need (once per encoder, or per
    split for fitted text encoders) and load them into a bank of arrays."""
    from emofuse.encoders.base import EncoderError
    from emofuse.features import FeatureStore, FeatureStoreError, extract_features

    start = time.perf_counter()
    by_key = {view.key: view for view in views}
    sampled: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for cell, cid in todo:
        rows, cell_notes = _sample_rows(table, by_key[cell.split_key], cell, config)
        sampled[cid] = rows
        notes += cell_notes

    def cell_rows(cell: Cell, cid: str) -> np.ndarray:
        view = by_key[cell.split_key]
        return np.concatenate([sampled[cid], view.rows("val"), view.rows("test")])

    speech_rows: dict[str, set[int]] = {}
    text_rows: dict[tuple[str, str], set[int]] = {}
    for cell, cid in todo:
        if cell.speech_encoder:
            speech_rows.setdefault(cell.speech_encoder, set()).update(cell_rows(cell, cid).tolist())
        if cell.text_encoder:
            key = (cell.split_key, cell.text_encoder)
            text_rows.setdefault(key, set()).update(cell_rows(cell, cid).tolist())

    store_dir = config.resolve(config.encoders.store) if config.encoders.store else out / "features"
    store = FeatureStore(store_dir, float16=config.encoders.float16)
    common = {
        "store": store,
        "batch_size": config.encoders.batch_size,
        "workers": config.encoders.workers,
        "progress": progress,
    }
    bank: dict[str, BankEntry] = {}

    def load(key: str, rows: set[int], encoder) -> None:
        positions = np.array(sorted(rows), dtype=np.int64)
        subset = table.iloc[positions]
        ok = store.available(subset, encoder)
        if not ok.all():
            notes.append(
                f"{encoder.modality} {encoder.spec}: no vector for {int((~ok).sum())} clips "
                "(extraction failed); cells leave them out"
            )
        bank[key] = BankEntry(positions[ok], store.get(subset[ok], encoder))

    def extract(modality: str, spec: str, positions: np.ndarray, **fit) -> Any:
        try:
            return extract_features(table.iloc[positions], **{modality: spec}, **fit, **common)
        except (EncoderError, FeatureStoreError) as err:  # a bad spec names its config key
            raise GridRunError(f"encoders.{modality}: {spec!r}: {err}") from err

    for spec, rows in speech_rows.items():
        positions = np.array(sorted(rows), dtype=np.int64)
        encoders = extract("speech", spec, positions)
        load(bank_key("speech", spec), rows, encoders["speech"])
    for (skey, spec), rows in text_rows.items():
        positions = np.array(sorted(rows), dtype=np.int64)
        fit = table.iloc[by_key[skey].rows("train")]
        encoders = extract("text", spec, positions, fit_table=fit)
        load(bank_key("text", spec, skey), rows, encoders["text"])
    seconds = time.perf_counter() - start

    codes = {label: i for i, label in enumerate(labels)}
    y_all = table["label"].map(codes).to_numpy(dtype=np.int64)
    ids = table["id"].astype(str).to_numpy()
    tasks = []
    train_config = {**asdict(config.train)}
    for cell, cid in todo:
        view = by_key[cell.split_key]
        blocks = []
        if cell.speech_encoder:
            blocks.append(("speech", bank_key("speech", cell.speech_encoder)))
        if cell.text_encoder:
            blocks.append(("text", bank_key("text", cell.text_encoder, cell.split_key)))

        def usable(rows: np.ndarray, blocks=blocks) -> np.ndarray:
            keep = np.ones(len(rows), dtype=bool)
            for _, key in blocks:
                keep &= bank[key].has(rows)
            return rows[keep]

        train, val, test = usable(sampled[cid]), usable(view.rows("val")), usable(view.rows("test"))
        ids_file = Path(CELLS_DIR) / cid / "train_ids.txt"
        _write_cell_files(out, cell, cid, config, ids[train], view, len(val), len(test))
        tasks.append(
            CellTask(
                cell=cell,
                cell_id=cid,
                blocks=blocks,
                train=train,
                val=val,
                test=test,
                y={"train": y_all[train], "val": y_all[val], "test": y_all[test]},
                labels=labels,
                train_config={**train_config, "seed": cell.seed},
                train_ids_file=str(ids_file),
            )
        )
    return tasks, bank, notes, seconds


def _write_cell_files(
    out: Path,
    cell: Cell,
    cid: str,
    config: GridConfig,
    train_ids: Iterable[str],
    view: SplitView,
    n_val: int,
    n_test: int,
) -> None:
    folder = out / CELLS_DIR / cid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_ids.txt").write_text("".join(f"{i}\n" for i in train_ids), encoding="utf-8")
    info = {
        "cell_id": cid,
        **asdict(cell),
        "settings": cell.settings(config),
        "split_file": str(Path(SPLITS_DIR) / f"{view.key}.csv"),
        "n_val": n_val,
        "n_test": n_test,
    }
    (folder / "cell.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
    )


def _result_row(task: CellTask, outcome: dict[str, Any]) -> dict[str, Any]:
    cell, metrics = task.cell, outcome["metrics"]
    return {
        "cell_id": task.cell_id,
        "split_strategy": cell.split_strategy,
        "fold": cell.fold,
        "modality": cell.modality,
        "speech_encoder": cell.speech_encoder,
        "text_encoder": cell.text_encoder,
        "per_label": cell.per_label_text,
        "order": cell.order,
        "seed": cell.seed,
        "n_train": len(task.train),
        "n_val": len(task.val),
        "n_test": len(task.test),
        "uar": round(metrics["uar"], 6),
        "accuracy": round(metrics["accuracy"], 6),
        "macro_f1": round(metrics["macro_f1"], 6),
        "best_epoch": outcome["best_epoch"],
        "seconds": round(outcome["seconds"], 3),
        "train_ids_file": task.train_ids_file,
    }


def _execute(
    tasks: list[CellTask],
    bank: dict[str, BankEntry],
    results: ResultsFile,
    out: Path,
    jobs: int,
    progress: bool,
) -> list[tuple[str, str]]:
    from tqdm.auto import tqdm

    failed: list[tuple[str, str]] = []
    bar = tqdm(total=len(tasks), desc="cells", unit="cell", disable=not progress)

    def finish(task: CellTask, outcome: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is not None:
            failed.append((task.cell_id, f"{type(error).__name__}: {error}"))
        else:
            assert outcome is not None
            metrics_path = out / CELLS_DIR / task.cell_id / "metrics.json"
            metrics_path.write_text(json.dumps(outcome["metrics"], indent=1), encoding="utf-8")
            results.append(_result_row(task, outcome))
        bar.update(1)

    import torch

    # One torch thread per cell: a batch-32 step through a small head gains nothing from
    # more threads and slows down tens of times when the cores are shared. Parallelism
    # comes from running cells side by side (output.jobs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                try:
                    outcome = run_task(task, bank)
                except Exception as err:  # noqa: BLE001 - one bad cell must not stop the grid
                    finish(task, None, err)
                else:
                    finish(task, outcome, None)
        else:
            _execute_parallel(tasks, bank, out, jobs, finish)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    return failed


def _execute_parallel(
    tasks: list[CellTask],
    bank: dict[str, BankEntry],
    out: Path,
    jobs: int,
    finish: Callable[[CellTask, dict[str, Any] | None, BaseException | None], None],
) -> None:
    """Cells in worker processes; the bank goes to .npy files the workers memory-map, so
    each worker holds the features once however many cells it trains."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    folder = out / BANK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shipped: dict[str, BankEntry] = {}
    for i, (key, entry) in enumerate(bank.items()):
        path = folder / f"{i}.npy"
        np.save(path, entry.matrix)
        shipped[key] = BankEntry(entry.rows, None, str(path))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)),
        mp_context=context,
        initializer=_worker_init,
        initargs=(shipped,),
    ) as pool:
        pending = {pool.submit(_worker_run, task): task for task in tasks}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    error = future.exception()
                    finish(task, None if error else future.result(), error)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# ------------------------------------------------------------------------------ outputs


def table_names(config: GridConfig, results: pd.DataFrame) -> list[str]:
    from emofuse.experiments.tables import tables_for

    names: list[str] = []
    for name in config.output.tables:
        names += tables_for(results) if name == "auto" else [name]
    return list(dict.fromkeys(names))


def strategy_names(config: GridConfig) -> dict[str, str]:
    """Table names for the CV strategies, with this grid's group column and k."""
    group = config.split.group
    return {"logo": f"leave-one-{group}-out", "kfold": f"{config.split.k}-fold by {group}"}


def write_outputs(run: GridRun, config: GridConfig, *, n_classes: int) -> None:
    """Tables in ``<output>/tables``, curves in ``<output>/plots`` and ``report.md``."""
    from emofuse.experiments.plots import plot_learning_curves
    from emofuse.experiments.tables import build_table

    out = run.output_dir
    documents = []
    for name in table_names(config, run.results):
        text = build_table(run.results, name, names=strategy_names(config))
        if not text:
            continue
        path = out / "tables" / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        run.tables.append(path)
        documents.append(text)
    run.plots = plot_learning_curves(
        run.results, out / "plots", n_classes=n_classes, title=config.name,
        names=strategy_names(config),
    )  # fmt: skip
    lines = [
        f"# {config.name}",
        "",
        f"{len(run.results)} runs in `{RESULTS_FILE}` "
        f"({run.results['cell_id'].nunique()} cells); per-cell training ids under "
        f"`{CELLS_DIR}/<cell_id>/train_ids.txt`, splits under `{SPLITS_DIR}/`.",
        "",
        "Tables: " + ", ".join(f"[{p.stem}]({p.relative_to(out)})" for p in run.tables),
        "",
    ]
    for path in run.plots:
        lines += [f"![{path.stem}]({path.relative_to(out)})", ""]
    lines += [doc.replace("\n## ", "\n### ").replace("## ", "### ", 1) for doc in documents]
    run.report = out / "report.md"
    run.report.write_text("\n".join(lines) + "\n", encoding="utf-8")
