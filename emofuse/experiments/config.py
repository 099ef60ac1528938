"""Grid configs: a TOML file that describes an experiment grid, validated into typed
dataclasses with errors that name the bad key.

A grid is corpus x split strategy x encoders x modalities x samples-per-emotion x
orderings x seeds; each combination is one cell, trained on cached features.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT
from emofuse.modalities import MODALITIES
from emofuse.sampling import ORDERS  # grid.orders: the sampling orders, one home

SPLIT_STRATEGIES = ("corpus", "stratified", "speaker", "script", "speaker+script", "kfold", "logo")
CV_STRATEGIES = ("kfold", "logo")
TABLES = ("auto", "table3", "table4", "table5", "table6", "splits", "summary")
SORT_KEYS = ("text_length", "duration_s")


class GridConfigError(ValueError):
    """A config that cannot describe a grid; the message names the key."""


class GridRunError(RuntimeError):
    """A grid that cannot run (bad corpus, impossible split) or cells that failed."""


@dataclass(frozen=True)
class CorpusSection:
    source: str = "demo"
    """'demo' (the built-in demo corpus), a corpus table (.parquet/.csv from `emofuse
    prepare`), a corpus directory or a manifest (read on the fly). Relative paths are
    relative to the config file. Empty: the corpus is given on the command line
    (`emofuse experiment CONFIG --corpus PATH`)."""
    layout: str = "auto"
    labels: tuple[str, ...] = ()
    """Keep only these labels, in this class order (empty: all of the corpus's labels)."""
    demo_speakers: int = 4
    """source = 'demo' only: speakers in the generated corpus (the last one is held out
    as the corpus's Validation part)."""
    demo_scripts_per_emotion: int = 30
    """source = 'demo' only: scripts per emotion, each read by every speaker."""
    demo_seed: int = 0


@dataclass(frozen=True)
class SplitSection:
    strategies: tuple[str, ...] = ("script",)
    test_size: float = 0.2
    val_size: float = 0.1
    k: int = 5
    """Folds for strategy 'kfold'."""
    group: str = "speaker"
    """Column that groups rows for 'kfold' and 'logo' (leave-one-group-out)."""
    seed: int = 0


@dataclass(frozen=True)
class EncodersSection:
    speech: tuple[str, ...] = (OFFLINE_SPEECH,)
    text: tuple[str, ...] = (OFFLINE_TEXT,)
    batch_size: int = 8
    """Clips (or texts) per encoder call during feature extraction."""
    float16: bool = False
    """Store vectors as float16 (half the disk; a separate cache)."""
    workers: int = 1
    """Processes encoding in parallel during extraction (CPU-bound encoders)."""
    store: str = ""
    """Feature store folder shared between grids (empty: <output dir>/features). Relative
    paths are relative to the config file."""


@dataclass(frozen=True)
class GridSection:
    modalities: tuple[str, ...] = MODALITIES
    per_label: tuple[int | None, ...] = (None,)
    """Training clips per emotion; 'all' (None) uses the whole training part."""
    orders: tuple[str, ...] = ("random",)
    """Sampling orders: random, shortest, longest, diverse (k-center over the cell's
    speech vectors; text vectors for text-only cells) or speaker-balanced."""
    seeds: tuple[int, ...] = (0,)
    dedupe_text: bool = False
    text_order_by: str = "text_length"
    """What shortest/longest mean for text-only cells: 'text_length' or 'duration_s'."""
    speech_order_by: str = "duration_s"
    """What shortest/longest mean for speech and both cells: 'duration_s' or 'text_length'."""
    speaker_norm: tuple[str, ...] = ("off",)
    """Speaker-adaptive normalisation per cell: off, auto, on (e.g. ["off", "auto"]);
    small-data recipe only. Cells with 'off' keep the ids they had before this axis."""


def _train_section() -> type:
    """The [train] section: TrainConfig's own fields (one definition of every training
    knob), less ``seed`` and ``speaker_norm``, which the grid sweeps itself
    (``grid.seeds``, ``grid.speaker_norm``). ``select`` defaults to false here, so a grid
    written before model selection existed trains (and ids) its cells as it did."""
    from emofuse.head.config import TrainConfig

    grid_defaults = {"select": False}
    return make_dataclass(
        "TrainSection",
        [
            (f.name, f.type, field(default=grid_defaults.get(f.name, f.default)))
            for f in fields(TrainConfig)
            if f.name not in ("seed", "speaker_norm")
        ],
        frozen=True,
    )


TrainSection = _train_section()


@dataclass(frozen=True)
class OutputSection:
    dir: str = "runs/experiment"
    """Where results.csv, tables and plots go (relative to the working directory)."""
    tables: tuple[str, ...] = ("auto",)
    """Paper-shaped tables to write: table3, table4, table5, table6, splits, summary, or
    'auto' (every table the grid's cells can fill)."""
    jobs: int = 1
    """Cells trained in parallel (processes)."""


@dataclass(frozen=True)
class GridConfig:
    name: str = "experiment"
    corpus: CorpusSection = field(default_factory=CorpusSection)
    split: SplitSection = field(default_factory=SplitSection)
    encoders: EncodersSection = field(default_factory=EncodersSection)
    grid: GridSection = field(default_factory=GridSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)
    base_dir: Path = Path(".")
    """The config file's folder; relative paths resolve against it."""

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir).expanduser().resolve()


_SECTIONS = {
    "corpus": CorpusSection,
    "split": SplitSection,
    "encoders": EncodersSection,
    "grid": GridSection,
    "train": TrainSection,
    "output": OutputSection,
}


def _coerce(where: str, annotation: str, value: Any) -> Any:
    """Check one value against its dataclass annotation (kept as a string)."""

    def bad(expected: str) -> GridConfigError:
        return GridConfigError(f"{where}: expected {expected}, got {value!r}")

    if annotation.startswith("tuple["):
        inner = annotation[len("tuple[") : -len(", ...]")]
        items = value if isinstance(value, list) else [value]
        return tuple(_coerce(f"{where}[{i}]", inner, v) for i, v in enumerate(items))
    if annotation == "int | None":
        if value == "all" or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise bad("a positive whole number or 'all'")
        return value
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if annotation in ("bool", "bool | None"):  # None: TrainConfig's "the recipe's value"
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if annotation == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise AssertionError(f"unhandled annotation {annotation}")  # pragma: no cover


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise GridConfigError(f"[{name}]: expected a table of settings, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise GridConfigError(
            f"[{name}]: unknown key {unknown[0]!r}; known keys: {', '.join(known)}"
        )
    values = {k: _coerce(f"{name}.{k}", str(known[k].type), v) for k, v in raw.items()}
    return cls(**values)


def _check_choices(where: str, values: tuple[str, ...], choices: tuple[str, ...]) -> None:
    if not values:
        raise GridConfigError(f"{where}: must not be empty")
    for v in values:
        if v not in choices:
            raise GridConfigError(f"{where}: {v!r} is not one of {', '.join(choices)}")


def _validate(config: GridConfig) -> None:
    _check_choices("split.strategies", config.split.strategies, SPLIT_STRATEGIES)
    _check_choices("grid.modalities", config.grid.modalities, MODALITIES)
    _check_choices("grid.orders", config.grid.orders, ORDERS)
    _check_choices("grid.text_order_by", (config.grid.text_order_by,), SORT_KEYS)
    _check_choices("grid.speech_order_by", (config.grid.speech_order_by,), SORT_KEYS)
    _check_choices("output.tables", config.output.tables, TABLES)
    _check_choices("grid.speaker_norm", config.grid.speaker_norm, ("off", "auto", "on"))
    if config.train.recipe == "paper" and set(config.grid.speaker_norm) != {"off"}:
        raise GridConfigError("grid.speaker_norm: the paper recipe never adapts to speakers")
    for key in ("demo_speakers", "demo_scripts_per_emotion"):
        if getattr(config.corpus, key) < 1:
            raise GridConfigError(f"corpus.{key}: must be at least 1")
    if config.corpus.source == "demo" and config.corpus.demo_speakers < 2:
        raise GridConfigError("corpus.demo_speakers: the demo corpus needs at least 2 speakers")
    for key, values in (
        ("corpus.labels", config.corpus.labels),
        ("split.strategies", config.split.strategies),
        ("encoders.speech", config.encoders.speech),
        ("encoders.text", config.encoders.text),
        ("grid.modalities", config.grid.modalities),
        ("grid.per_label", config.grid.per_label),
        ("grid.orders", config.grid.orders),
        ("grid.seeds", config.grid.seeds),
        ("grid.speaker_norm", config.grid.speaker_norm),
    ):
        seen = set()
        for value in values:
            if value in seen:
                shown = "all" if value is None else value
                raise GridConfigError(f"{key}: {shown!r} is listed twice")
            seen.add(value)
    for key in ("speech", "text"):
        for i, spec in enumerate(getattr(config.encoders, key)):
            if not spec.strip():
                raise GridConfigError(f"encoders.{key}[{i}]: empty encoder spec")
    if config.encoders.batch_size < 1 or config.encoders.workers < 1:
        raise GridConfigError("encoders.batch_size and encoders.workers: must be at least 1")
    if config.split.group.strip() == "":
        raise GridConfigError("split.group: must name a column (e.g. speaker)")
    if not config.grid.per_label:
        raise GridConfigError("grid.per_label: must not be empty")
    if not config.grid.seeds:
        raise GridConfigError("grid.seeds: must not be empty")
    for key, value in (
        ("split.test_size", config.split.test_size),
        ("split.val_size", config.split.val_size),
    ):
        if not 0 <= value < 1:
            raise GridConfigError(f"{key}: expected a fraction in [0, 1), got {value}")
    if config.split.test_size + config.split.val_size >= 1:
        raise GridConfigError("split.test_size + split.val_size: must leave rows for training")
    if config.split.k < 2:
        raise GridConfigError(f"split.k: expected at least 2 folds, got {config.split.k}")
    needs = set(config.grid.modalities)
    if needs & {"speech", "both"} and not config.encoders.speech:
        raise GridConfigError("encoders.speech: a speech or both modality needs a speech encoder")
    if needs & {"text", "both"} and not config.encoders.text:
        raise GridConfigError("encoders.text: a text or both modality needs a text encoder")
    from emofuse.head.config import train_config_problems

    problems = train_config_problems(config.train)
    if problems:
        raise GridConfigError("; ".join(f"train.{p}" for p in problems))
    if config.output.jobs < 1:
        raise GridConfigError("output.jobs: must be at least 1")


def grid_config_from_dict(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> GridConfig:
    """Validate a parsed config; raises :class:`GridConfigError` naming the bad key."""
    unknown = sorted(set(raw) - set(_SECTIONS) - {"name"})
    if unknown:
        raise GridConfigError(
            f"unknown section or key {unknown[0]!r}; known: name, {', '.join(_SECTIONS)}"
        )
    name = raw.get("name", "experiment")
    if not isinstance(name, str) or not name:
        raise GridConfigError(f"name: expected a non-empty string, got {name!r}")
    sections = {key: _section(key, cls, raw.get(key, {})) for key, cls in _SECTIONS.items()}
    config = GridConfig(name=name, base_dir=base_dir, **sections)
    _validate(config)
    return config


CORPUS_HINT = (
    "pass the corpus with `emofuse experiment CONFIG --corpus PATH` (or "
    "load_grid_config(CONFIG, corpus=PATH)), or set corpus.source in the config: a table "
    "from `emofuse prepare`, a corpus folder or a manifest; relative paths in the config "
    "are relative to the config file"
)


def corpus_problem(config: GridConfig) -> str | None:
    """Why the grid's corpus cannot be found (None when it can, or is the demo corpus);
    the message says what to pass."""
    source = config.corpus.source.strip()
    if source == "demo":
        return None
    if not source:
        return f"corpus.source: not set; {CORPUS_HINT}"
    path = config.resolve(source)
    if not path.exists():
        return f"corpus.source: {path} does not exist; {CORPUS_HINT}"
    return None


def with_corpus(config: GridConfig, corpus: str | Path) -> GridConfig:
    """``config`` reading ``corpus`` (a path relative to the working folder, or 'demo')."""
    from dataclasses import replace

    source = str(corpus) if str(corpus) == "demo" else str(Path(corpus).expanduser().resolve())
    return replace(config, corpus=replace(config.corpus, source=source))


def load_grid_config(
    path: str | Path, *, corpus: str | Path | None = None, check_corpus: bool = True
) -> GridConfig:
    """Read and validate a TOML grid config.

    ``corpus`` replaces ``corpus.source`` (relative to the working folder, as given on a
    command line); a relative ``corpus.source`` in the file is relative to the file's
    folder. With ``check_corpus`` a corpus path that is unset or absent is an error that
    says what to pass."""
    path = Path(path)
    if not path.exists():
        raise GridConfigError(f"{path}: no such config file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise GridConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        config = grid_config_from_dict(raw, base_dir=path.resolve().parent)
    except GridConfigError as err:
        raise GridConfigError(f"{path}: {err}") from err
    if corpus is not None:
        config = with_corpus(config, corpus)
    problem = corpus_problem(config) if check_corpus else None
    if problem:
        raise GridConfigError(f"{path}: {problem}")
    return config
