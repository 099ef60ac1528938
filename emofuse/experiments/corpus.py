"""The grid's corpus: read once (the demo corpus is made in ``<output>/demo-corpus`` the
first time, and again when its settings change), held to the config's labels, and
fingerprinted so a resumed grid refuses a corpus that changed in place."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from emofuse.experiments.config import GridConfig, GridRunError, corpus_problem
from emofuse.experiments.results import RESULTS_FILE

DEMO_DIR = "demo-corpus"
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


def _read_source(config: GridConfig, progress: bool) -> tuple[pd.DataFrame, list[str]]:
    """A prepared table as it is, or a corpus folder / manifest scanned on the fly."""
    from emofuse.corpus import read_corpus, read_table
    from emofuse.corpus.table import COLUMNS

    path = config.resolve(config.corpus.source)
    is_table = path.suffix == ".parquet" or (
        path.suffix == ".csv"
        and path.is_file()
        and set(COLUMNS) <= set(pd.read_csv(path, nrows=0).columns)
    )
    if is_table:
        return read_table(path)
    scan = read_corpus(path, layout=config.corpus.layout, progress=progress)
    if len(scan.problems):
        print(
            f"{path}: {len(scan.problems)} files skipped (e.g. {scan.problems['reason'].iloc[0]})",
            file=sys.stderr,
        )
    return scan.table, list(scan.labels)


def _read_demo(
    config: GridConfig, out_dir: Path, progress: bool, create: bool
) -> tuple[pd.DataFrame, list[str]] | None:
    from emofuse.corpus import read_corpus
    from emofuse.demo.corpus import demo_corpus_is_current, ensure_demo_corpus

    c, root = config.corpus, out_dir / DEMO_DIR
    settings = {
        "seed": c.demo_seed,
        "speakers": c.demo_speakers,
        "scripts_per_emotion": c.demo_scripts_per_emotion,
    }
    if not create and not demo_corpus_is_current(root, **settings):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_demo_corpus(root, progress=progress, **settings)
    scan = read_corpus(root, layout="aihub466", progress=False)
    return scan.table, list(scan.labels)


def load_corpus(
    config: GridConfig, out_dir: Path, *, progress: bool = True, create: bool = True
) -> tuple[pd.DataFrame, list[str]] | None:
    """The grid's utterance table (index 0..n-1) and class order; ``None`` when the demo
    corpus does not exist yet and ``create`` is False (dry runs write nothing)."""
    from emofuse.corpus import CorpusError, CorpusTableError

    c = config.corpus
    problem = corpus_problem(config)
    if problem:
        raise GridRunError(problem)
    try:
        if c.source == "demo":
            loaded = _read_demo(config, out_dir, progress, create)
            if loaded is None:
                return None
        else:
            loaded = _read_source(config, progress)
    except (CorpusError, CorpusTableError, FileNotFoundError) as err:
        raise GridRunError(f"corpus.source: {err}") from err
    table, labels = loaded
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
