"""The feature store: every vector computed once, kept on disk, resumable after a kill.

Vectors are keyed by (encoder part fingerprint, key): the key is the utterance id for
speech and the sha1 of :func:`emofuse.sampling.normalize_text` for text, so a script read
by 40 speakers is encoded once. A concatenation (``egemaps+resemblyzer``) is stored part
by part, so adding a part never recomputes the others. See :mod:`emofuse.features_io` for
the on-disk layout and why a kill loses at most one shard of work.

Scale-out: ``workers>1`` runs a process pool over batches (CPU-bound encoders such as
eGeMAPS); under ``accelerate launch`` each rank encodes its share of the missing keys and
writes its own shards into the same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import unicodedata
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.encoders.base import Encoder, EncoderError, stable_hash
from emofuse.features_io import FORMAT_VERSION, Failure, FeatureStoreError, PartDir, slug

__all__ = [
    "ExtractReport",
    "Failure",
    "FeatureStore",
    "FeatureStoreError",
    "MissingFeaturesError",
    "PartReport",
    "clean_text",
    "current_ranks",
    "extract_features",
    "load_fitted_encoder",
    "row_keys",
    "text_key",
]

#: When this many items failed and none succeeded, the run stops: something systematic
#: (wrong model, wrong audio format) is wrong and recording every clip as failed hides it.
ABORT_AFTER_FAILURES = 50
TEXT_KEY_SCHEME = "sha1(emofuse.sampling.normalize_text(text))"
SPEECH_KEY_SCHEME = "utterance id"


class MissingFeaturesError(FeatureStoreError, LookupError):
    """Vectors asked for with :meth:`FeatureStore.get` that the store does not hold."""


# -- keys ----------------------------------------------------------------------------------
def _normalize_for_key(text: object) -> str:
    from emofuse.sampling import normalize_text

    return normalize_text(text)


def clean_text(text: object) -> str:
    """The form a text encoder sees: NFC, white space collapsed, ends stripped.

    Deliberately milder than the key's normalisation: punctuation and case stay, since
    ``!`` and ``?`` carry emotion.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return " ".join(unicodedata.normalize("NFC", str(text)).split())


def text_key(text: object) -> str:
    """The store key of a transcript: sha1 of its normalised form."""
    return hashlib.sha1(_normalize_for_key(text).encode("utf-8")).hexdigest()


def _items(table: pd.DataFrame, modality: str) -> pd.DataFrame:
    """One row per distinct key: key, payload (audio path / text to encode), length, ids.

    Indexed like nothing in particular; ``row_keys`` maps each table row to its key.
    """
    if modality == "speech":
        _require(table, ["id", "audio"])
        keys = table["id"].astype(str)
        if keys.duplicated().any():
            dupes = keys[keys.duplicated()].unique()[:5]
            raise FeatureStoreError(f"duplicate utterance ids in the table, e.g. {list(dupes)}")
        length = (
            table["duration_s"].astype(float).fillna(0.0)
            if "duration_s" in table
            else pd.Series(0.0, index=table.index)
        )
        return pd.DataFrame(
            {
                "key": keys.to_numpy(),
                "payload": table["audio"].astype(str).to_numpy(),
                "length": length.to_numpy(),
                "ids": [(k,) for k in keys],
            }
        )
    if modality == "text":
        _require(table, ["id", "text"])
        frame = pd.DataFrame(
            {"id": table["id"].astype(str).to_numpy(), "text": table["text"].to_numpy()}
        )
        frame["key"] = _text_keys(frame["text"])
        # The text encoded for a key is the first row's (by id): deterministic per table.
        frame = frame.sort_values("id", kind="stable")
        grouped = frame.groupby("key", sort=True)
        first = grouped["text"].first().map(clean_text)
        ids = grouped["id"].agg(tuple)
        return pd.DataFrame(
            {
                "key": first.index.to_numpy(),
                "payload": first.to_numpy(),
                "length": first.str.len().to_numpy(dtype=float),
                "ids": ids.loc[first.index].to_numpy(),
            }
        )
    raise FeatureStoreError(f"modality must be 'speech' or 'text', not {modality!r}")


def _text_keys(texts: pd.Series) -> np.ndarray:
    values = texts.fillna("").astype(str).to_numpy()
    unique = pd.unique(values)
    mapping = {v: text_key(v) for v in unique}
    return np.asarray([mapping[v] for v in values], dtype=object)


def row_keys(table: pd.DataFrame, modality: str) -> np.ndarray:
    """The store key of every table row, in table order."""
    if modality == "speech":
        _require(table, ["id"])
        return table["id"].astype(str).to_numpy(dtype=object)
    _require(table, ["text"])
    return _text_keys(table["text"])


def _require(table: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise FeatureStoreError(
            f"the table has no column(s) {missing} (columns: {list(table.columns)})"
        )


# -- reports -------------------------------------------------------------------------------
@dataclass
class PartReport:
    """What :meth:`FeatureStore.ensure` did for one encoder part."""

    spec: str
    directory: Path
    computed: int = 0
    cached: int = 0
    failed: list[Failure] = field(default_factory=list)
    #: failures from earlier runs that were not retried (``retry_failed=False``)
    skipped_failed: int = 0
    seconds: float = 0.0


@dataclass
class ExtractReport:
    """Totals over the parts of one encoder (counts are vectors, i.e. part x key)."""

    modality: str
    spec: str
    parts: list[PartReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def computed(self) -> int:
        return sum(p.computed for p in self.parts)

    @property
    def cached(self) -> int:
        return sum(p.cached for p in self.parts)

    @property
    def failed(self) -> list[Failure]:
        return [f for p in self.parts for f in p.failed]

    def to_text(self, max_failures: int = 10) -> str:
        lines = [
            f"{self.modality} {self.spec}: {self.computed} computed, {self.cached} cached, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s"
        ]
        for p in self.parts:
            rate = f", {p.computed / p.seconds:.1f}/s" if p.computed and p.seconds > 0 else ""
            lines.append(
                f"  {p.spec}: {p.computed} computed, {p.cached} cached, {len(p.failed)} failed"
                f"{rate} -> {p.directory}"
            )
            if p.skipped_failed:
                lines.append(
                    f"    {p.skipped_failed} failed in an earlier run and were not retried "
                    "(--retry-failed / retry_failed=True to try again)"
                )
        for f in self.failed[:max_failures]:
            lines.append(f"  failed [{f.part}] {f.describe()}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more failures")
        return "\n".join(lines)


# -- distributed ranks ---------------------------------------------------------------------
@dataclass
class _Ranks:
    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def current_ranks() -> _Ranks:
    """This process's rank under ``accelerate launch`` (or torchrun); rank 0 of 1 otherwise.

    Accelerate (and torch) are imported only when launched with several processes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Ranks()
    import torch
    from accelerate import PartialState

    # On a machine without CUDA, `accelerate launch --multi_gpu` still starts the ranks;
    # cpu=True makes them join one gloo process group.
    state = PartialState(cpu=not torch.cuda.is_available())
    return _Ranks(state.process_index, state.num_processes, state)


# -- encoding one batch (shared by the main process and pool workers) -----------------------
#: Clips longer than this are refused (a recorded failure naming the file), checked from
#: the header before decoding: a stray hours-long recording in a corpus must not be read
#: into memory. Emotion corpora hold clips of seconds; raise it for other material.
MAX_CLIP_S = 600.0


def _load_waves(
    items: Sequence[tuple[str, str, tuple[str, ...]]], sample_rate_hz: int
) -> tuple[list[tuple[str, tuple[str, ...], str]], list[np.ndarray], list[Failure]]:
    from emofuse.audio import load_audio

    ok, waves, failures = [], [], []
    for key, path, ids in items:
        try:
            waves.append(
                load_audio(path, sample_rate_hz, max_duration_s=MAX_CLIP_S, long_policy="error")
            )
            ok.append((key, ids, path))
        except Exception as error:  # AudioError, or anything a decoder throws
            failures.append(Failure(key, ids, path, f"{type(error).__name__}: {error}"))
    return ok, waves, failures


def _encode_items(
    encoder: Encoder,
    items: Sequence[tuple[str, str, tuple[str, ...]]],
    loaded: tuple[list, list, list[Failure]] | None = None,
) -> tuple[list[str], np.ndarray, list[Failure]]:
    """Encode one batch; a failing item is isolated and recorded, never fatal."""
    if encoder.modality == "speech":
        ok, inputs, failures = (
            loaded if loaded is not None else _load_waves(items, encoder.sample_rate_hz)
        )
    else:
        ok = [(key, ids, "") for key, _, ids in items]
        inputs, failures = [payload for _, payload, _ in items], []
    if not ok:
        return [], np.zeros((0, encoder.dim), dtype=np.float32), failures
    try:
        vectors = [_checked(encoder, encoder.encode(inputs), len(inputs))]
        kept = ok
    except EncoderError:
        raise
    except Exception:
        vectors, kept = [], []
        for entry, x in zip(ok, inputs, strict=True):  # isolate the item(s) that fail
            try:
                vectors.append(_checked(encoder, encoder.encode([x]), 1))
                kept.append(entry)
            except EncoderError:
                raise
            except Exception as error:
                failures.append(
                    Failure(
                        entry[0],
                        entry[1],
                        entry[2],
                        f"encoder error: {type(error).__name__}: {error}",
                    )
                )
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    for (key, ids, path), good in zip(kept, finite, strict=True):
        if not good:
            failures.append(Failure(key, ids, path, "encoder gave NaN or infinite values"))
    keys = [entry[0] for entry, good in zip(kept, finite, strict=True) if good]
    return keys, matrix[finite], failures


def _checked(encoder: Encoder, vectors: Any, n: int) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float32)
    if out.shape != (n, encoder.dim):
        # A wrong shape is a bug in the encoder, the same for every batch: stop the run.
        raise EncoderError(
            f"{encoder.spec}: encode() returned shape {out.shape} for a batch of {n}, "
            f"expected ({n}, {encoder.dim})"
        )
    return out


_WORKER_ENCODER: Encoder | None = None


def _worker_init(spec: str, modality: str, state_dir: str | None, modules: list[str]) -> None:
    """Pool worker start-up: build the encoder from its spec (+ fitted state)."""
    import importlib

    from emofuse.encoders.registry import build_encoder

    global _WORKER_ENCODER
    for module in modules:  # modules that register plug-in encoders on import
        importlib.import_module(module)
    encoder = build_encoder(spec, modality)
    if state_dir:
        encoder.load_state(state_dir)
    _WORKER_ENCODER = encoder


def _worker_encode(
    items: list[tuple[str, str, tuple[str, ...]]],
) -> tuple[list[str], np.ndarray, list[Failure]]:
    assert _WORKER_ENCODER is not None, "worker not initialised"
    return _encode_items(_WORKER_ENCODER, items)


# -- the store -----------------------------------------------------------------------------
class FeatureStore:
    """Vectors on disk under ``root``; ``float16=True`` halves the size (a separate key)."""

    def __init__(self, root: str | Path, *, float16: bool = False):
        self.root = Path(root)
        self.float16 = float16

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, float16={self.float16})"

    @property
    def dtype(self) -> str:
        return "float16" if self.float16 else "float32"

    # -- directories -------------------------------------------------------------------
    def part_dir(self, part: Encoder) -> PartDir:
        """The directory holding ``part``'s vectors (not created)."""
        fingerprint = part.fingerprint()
        suffix = "-f16" if self.float16 else ""
        path = self.root / part.modality / f"{slug(part.spec)}-{fingerprint}{suffix}"
        meta = {
            "format": FORMAT_VERSION,
            "modality": part.modality,
            "name": part.name,
            "spec": part.spec,
            "config": part.config(),
            "dim": part.dim,
            "fingerprint": fingerprint,
            "dtype": self.dtype,
            "key": SPEECH_KEY_SCHEME if part.modality == "speech" else TEXT_KEY_SCHEME,
            "fitted": bool(part.needs_fit),
        }
        if part.modality == "text":
            meta["text_encoded"] = (
                "emofuse.features.clean_text of the first row (by id) with the key"
            )
        return PartDir(path, meta)

    def state_dir(self, part: Encoder) -> Path:
        """Where a fitted part's state is kept (bundles copy it from here)."""
        return self.part_dir(part).state_dir

    def _prepare_part(self, part: Encoder, ranks: _Ranks) -> PartDir:
        if part.needs_fit and not part.is_fitted:
            raise FeatureStoreError(
                f"{part.spec} must be fitted on training text before extraction "
                "(use extract_features(..., fit_table=train_rows))"
            )
        pdir = self.part_dir(part)
        if ranks.is_main:
            pdir.create()
            if part.needs_fit and not (pdir.state_dir / "DONE").exists():
                _save_state(part, pdir.state_dir)
        ranks.wait()
        if not ranks.is_main:
            pdir.check_meta()
        return pdir

    def _record_encoder(self, encoder: Encoder) -> None:
        """Note which part directories make up ``encoder`` (for load_fitted_encoder)."""
        path = self.root / encoder.modality / "encoders" / f"{encoder.fingerprint()}.json"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        from emofuse.features_io import atomic_write_json

        atomic_write_json(
            path,
            {
                "spec": encoder.spec,
                "modality": encoder.modality,
                "fingerprint": encoder.fingerprint(),
                "dim": encoder.dim,
                "parts": [
                    {
                        "spec": p.spec,
                        "fingerprint": p.fingerprint(),
                        "dir": self.part_dir(p).path.name,
                    }
                    for p in encoder.parts()
                ],
            },
        )

    # -- extraction --------------------------------------------------------------------
    def ensure(
        self,
        table: pd.DataFrame,
        encoder: Encoder,
        *,
        batch_size: int = 8,
        shard_size: int = 512,
        progress: bool = True,
        workers: int = 1,
        retry_failed: bool = False,
    ) -> ExtractReport:
        """Compute the vectors of ``table`` that the store lacks, part by part."""
        if batch_size < 1 or shard_size < 1 or workers < 1:
            raise ValueError("batch_size, shard_size and workers must be at least 1")
        start = time.perf_counter()
        ranks = current_ranks()
        items = _items(table, encoder.modality)
        report = ExtractReport(encoder.modality, encoder.spec)
        for part in encoder.parts():
            report.parts.append(
                self._ensure_part(
                    items,
                    part,
                    ranks,
                    batch_size=batch_size,
                    shard_size=shard_size,
                    progress=progress,
                    workers=workers,
                    retry_failed=retry_failed,
                )
            )
        if ranks.is_main:
            self._record_encoder(encoder)
        report.seconds = time.perf_counter() - start
        return report

    def _ensure_part(
        self,
        items: pd.DataFrame,
        part: Encoder,
        ranks: _Ranks,
        *,
        batch_size: int,
        shard_size: int,
        progress: bool,
        workers: int,
        retry_failed: bool,
    ) -> PartReport:
        start = time.perf_counter()
        pdir = self._prepare_part(part, ranks)
        present = pdir.index().positions(items["key"]) >= 0
        known_failures = pdir.failures()
        failed_before = items["key"].isin(list(known_failures)).to_numpy() & ~present
        todo = ~present & (~failed_before if not retry_failed else True)
        missing = items[todo]
        # Every rank must see the same store before anyone writes, or the shares differ.
        ranks.wait()
        share = missing.sort_values("key").iloc[ranks.rank :: ranks.world]
        if len(share):
            _compute(
                pdir,
                part,
                share,
                rank=ranks.rank,
                batch_size=batch_size,
                shard_size=shard_size,
                workers=workers,
                progress=progress and ranks.is_main,
            )
        ranks.wait()
        # The report comes from the store, so under accelerate it counts every rank's work.
        now_present = pdir.index().positions(items["key"]) >= 0
        failures = pdir.failures()
        failed = [failures[k] for k in items.loc[~now_present, "key"] if k in failures]
        return PartReport(
            spec=part.spec,
            directory=pdir.path,
            computed=int((now_present & todo).sum()),
            cached=int(present.sum()),
            failed=failed,
            skipped_failed=0 if retry_failed else int(failed_before.sum()),
            seconds=time.perf_counter() - start,
        )

    # -- reading -----------------------------------------------------------------------
    def _lookup(
        self, table: pd.DataFrame, encoder: Encoder
    ) -> list[tuple[PartDir, Any, np.ndarray]]:
        keys = row_keys(table, encoder.modality)
        found = []
        for part in encoder.parts():
            pdir = self.part_dir(part)
            if pdir.exists():
                pdir.check_meta()
                index = pdir.index()
                found.append((pdir, index, index.positions(keys)))
            else:
                found.append((pdir, None, np.full(len(keys), -1)))
        return found

    def available(self, table: pd.DataFrame, encoder: Encoder) -> np.ndarray:
        """Boolean mask over table rows: True where every part's vector is stored."""
        mask = np.ones(len(table), dtype=bool)
        for _, _, positions in self._lookup(table, encoder):
            mask &= positions >= 0
        return mask

    def get(self, table: pd.DataFrame, encoder: Encoder) -> np.ndarray:
        """float32 ``(len(table), encoder.dim)`` in table order; raises naming what is missing."""
        blocks = []
        for pdir, index, positions in self._lookup(table, encoder):
            absent = positions < 0
            if absent.any():
                raise MissingFeaturesError(self._missing_message(table, encoder, pdir, absent))
            blocks.append(pdir.read_vectors(index, positions))
        if not blocks:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]

    def _missing_message(
        self, table: pd.DataFrame, encoder: Encoder, pdir: PartDir, absent: np.ndarray
    ) -> str:
        ids = (
            table["id"].astype(str).to_numpy()[absent] if "id" in table else np.flatnonzero(absent)
        )
        keys = row_keys(table, encoder.modality)[absent]
        failures = pdir.failures() if pdir.exists() else {}
        failed = [(i, failures[k]) for i, k in zip(ids, keys, strict=True) if k in failures]
        head = (
            f"{encoder.modality} features {pdir.meta['spec']} missing for {int(absent.sum())} of "
            f"{len(table)} rows in {pdir.path}"
        )
        if not pdir.exists():
            head += (
                " (nothing extracted with this encoder and settings"
                + (" in a float16 store" if self.float16 else "")
                + ")"
            )
        parts = [head]
        never = [i for i, k in zip(ids, keys, strict=True) if k not in failures]
        if never:
            parts.append(
                f"not extracted: {', '.join(map(str, never[:5]))}"
                + (f" and {len(never) - 5} more" if len(never) > 5 else "")
            )
        if failed:
            parts.append(
                f"failed ({len(failed)}): "
                + "; ".join(f"{i} ({f.reason})" for i, f in failed[:3])
                + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
            )
        parts.append(
            "run FeatureStore.ensure / `emofuse extract` first, or drop the rows "
            "with FeatureStore.available(table, encoder)"
        )
        return "; ".join(parts)


def _save_state(part: Encoder, state_dir: Path) -> None:
    """Save fitted state, marking completion last so a half-written state is never loaded."""
    import shutil

    tmp = state_dir.with_name(f".state.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    part.save_state(tmp)
    (tmp / "DONE").write_text(part.fingerprint() + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    os.replace(tmp, state_dir)


# -- the extraction loop -------------------------------------------------------------------
def _length_batches(
    share: pd.DataFrame, batch_size: int
) -> list[list[tuple[str, str, tuple[str, ...]]]]:
    """Batches of similar length (little padding), visited in a fixed shuffled order so
    the progress bar's rate and ETA are honest rather than slowing towards the end."""
    ordered = share.sort_values(["length", "key"], kind="stable")
    rows = list(zip(ordered["key"], ordered["payload"], ordered["ids"], strict=True))
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    order = np.random.default_rng(0).permutation(len(batches))
    return [batches[i] for i in order]


def _batch_results(
    part: Encoder, pdir: PartDir, batches: list[list], workers: int
) -> Iterator[tuple[list[str], np.ndarray, list[Failure]]]:
    if workers <= 1:
        yield from _serial_results(part, batches)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold torch/openSMILE threads that fork would copy
    # mid-lock. Workers import the part's module so plug-in encoders are registered.
    modules = sorted({type(part).__module__} - {"__main__"})
    state = str(pdir.state_dir) if part.needs_fit else None
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(part.spec, part.modality, state, modules),
    ) as pool:
        pending: deque[Future] = deque()
        batch_iter = iter(batches)
        for batch in batch_iter:
            pending.append(pool.submit(_worker_encode, batch))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(batch_iter, None)
            if nxt is not None:
                pending.append(pool.submit(_worker_encode, nxt))
            yield result


def _serial_results(
    part: Encoder, batches: list[list]
) -> Iterator[tuple[list[str], np.ndarray, list[Failure]]]:
    if part.modality != "speech":
        for batch in batches:
            yield _encode_items(part, batch)
        return
    # Read the next batch's audio on a thread while this one is encoded.
    with ThreadPoolExecutor(max_workers=1) as loader:
        future = loader.submit(_load_waves, batches[0], part.sample_rate_hz) if batches else None
        for i, batch in enumerate(batches):
            loaded = future.result()
            future = (
                loader.submit(_load_waves, batches[i + 1], part.sample_rate_hz)
                if i + 1 < len(batches)
                else None
            )
            yield _encode_items(part, batch, loaded)


class _ShardWriter:
    def __init__(self, pdir: PartDir, rank: int, shard_size: int):
        self.pdir, self.rank, self.shard_size = pdir, rank, shard_size
        self.number = pdir.next_shard_number(rank)
        self.keys: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.written = 0

    def add(self, keys: list[str], vectors: np.ndarray) -> list[str]:
        """Buffer vectors; returns keys refused because float16 would overflow them."""
        refused: list[str] = []
        if self.pdir.dtype == np.float16 and len(keys):
            fits = (np.abs(vectors) <= np.finfo(np.float16).max).all(axis=1)
            refused = [k for k, ok in zip(keys, fits, strict=True) if not ok]
            keys = [k for k, ok in zip(keys, fits, strict=True) if ok]
            vectors = vectors[fits]
        self.keys.extend(keys)
        self.vectors.append(vectors)
        while len(self.keys) >= self.shard_size:
            self._write(self.shard_size)
        return refused

    def flush(self) -> None:
        if self.keys:
            self._write(len(self.keys))

    def _write(self, n: int) -> None:
        vectors = np.concatenate(self.vectors)
        self.pdir.write_shard(self.rank, self.number, self.keys[:n], vectors[:n])
        self.written += n
        self.number += 1
        self.keys, self.vectors = self.keys[n:], [vectors[n:]]


def _compute(
    pdir: PartDir,
    part: Encoder,
    share: pd.DataFrame,
    *,
    rank: int,
    batch_size: int,
    shard_size: int,
    workers: int,
    progress: bool,
) -> None:
    from tqdm import tqdm

    batches = _length_batches(share, batch_size)
    writer = _ShardWriter(pdir, rank, shard_size)
    ids_by_key = dict(zip(share["key"], share["ids"], strict=True))
    n_ok = n_failed = 0
    unit = "clip" if part.modality == "speech" else "text"
    bar = tqdm(
        total=len(share),
        desc=f"{part.modality} {part.spec}",
        unit=unit,
        disable=not progress,
        smoothing=0.1,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    try:
        for keys, vectors, failures in _batch_results(part, pdir, batches, workers):
            refused = set(writer.add(keys, vectors))
            if refused:
                failures = failures + [
                    Failure(
                        k,
                        ids_by_key.get(k, ()),
                        "",
                        "value outside the float16 range (use a float32 store)",
                    )
                    for k in refused
                ]
            pdir.record_failures(rank, failures)
            n_ok += len(keys) - len(refused)
            n_failed += len(failures)
            bar.update(len(keys) + len(failures) - len(refused))
            if n_failed:
                bar.set_postfix(failed=n_failed, refresh=False)
            if n_failed >= ABORT_AFTER_FAILURES and n_ok == 0:
                raise FeatureStoreError(
                    f"{part.spec}: the first {n_failed} items all failed, stopping; last "
                    f"reason: {failures[-1].describe() if failures else '?'} "
                    f"(all reasons in {pdir.failures_dir})"
                )
    finally:
        # Whatever stopped the loop (Ctrl-C, an error), the vectors already made are kept.
        writer.flush()
        bar.close()


# -- fitted encoders -----------------------------------------------------------------------
def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(str(text).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def _fit_part(store: FeatureStore, part: Encoder, texts: list[str], ranks: _Ranks) -> None:
    """Fit ``part`` on ``texts`` once; later calls with the same texts reload the state."""
    try:
        settings = part.config()
    except Exception:  # some encoders only know their config once fitted
        settings = {}
    fit_id = stable_hash(
        {"spec": part.spec, "name": part.name, "config": settings, "texts": _texts_digest(texts)}
    )
    record = store.root / part.modality / "fits" / f"{slug(part.spec)}-{fit_id}.json"
    if not record.exists() and ranks.is_main:
        part.fit(texts)
        store._prepare_part(part, _Ranks())  # saves state/ and encoder.json
        from emofuse.features_io import atomic_write_json

        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            record,
            {
                "spec": part.spec,
                "fingerprint": part.fingerprint(),
                "dir": store.part_dir(part).path.name,
                "n_texts": len(texts),
            },
        )
        ranks.wait()
        return
    ranks.wait()
    info = json.loads(record.read_text(encoding="utf-8"))
    state = store.root / part.modality / info["dir"] / "state"
    part.load_state(state)
    if part.fingerprint() != info["fingerprint"]:
        raise FeatureStoreError(
            f"{state}: reloaded state gives fingerprint {part.fingerprint()}, recorded "
            f"{info['fingerprint']} in {record}; delete both to refit"
        )


def extract_features(
    table: pd.DataFrame,
    *,
    store: FeatureStore | str | Path,
    speech: str | Encoder | None = None,
    text: str | Encoder | None = None,
    fit_table: pd.DataFrame | None = None,
    batch_size: int = 8,
    shard_size: int = 512,
    progress: bool = True,
    workers: int = 1,
    retry_failed: bool = False,
    reports: list[ExtractReport] | None = None,
) -> dict[str, Encoder]:
    """Build encoders from specs, fit text encoders on ``fit_table`` (training rows only),
    and make sure the store holds every vector of ``table``.

    Returns ``{modality: encoder}`` (fitted; their fingerprints include the fitted state).
    Pass a list as ``reports`` to receive the :class:`ExtractReport` of each modality.
    """
    from emofuse.encoders.registry import build_encoder

    if speech is None and text is None:
        raise ValueError("extract_features needs a speech and/or a text encoder")
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    ranks = current_ranks()
    encoders: dict[str, Encoder] = {}
    for modality, spec in (("speech", speech), ("text", text)):
        if spec is None:
            continue
        encoder = spec if isinstance(spec, Encoder) else build_encoder(spec, modality)
        if encoder.modality != modality:
            raise FeatureStoreError(
                f"{encoder.spec} is a {encoder.modality} encoder, not {modality}"
            )
        for part in encoder.parts():
            if part.needs_fit and not part.is_fitted:
                if fit_table is None or not len(fit_table):
                    raise FeatureStoreError(
                        f"{part.spec} must be fitted on training text: pass fit_table "
                        "(the training rows of a split)"
                    )
                _require(fit_table, ["text"])
                _fit_part(store, part, fit_table["text"].fillna("").astype(str).tolist(), ranks)
        report = store.ensure(
            table,
            encoder,
            batch_size=batch_size,
            shard_size=shard_size,
            progress=progress,
            workers=workers,
            retry_failed=retry_failed,
        )
        if reports is not None:
            reports.append(report)
        encoders[modality] = encoder
    return encoders


def load_fitted_encoder(
    store: FeatureStore | str | Path, spec: str, modality: str, fingerprint: str
) -> Encoder:
    """Rebuild the encoder that :func:`extract_features` used (fitted state included),
    checking that it still gives ``fingerprint``."""
    from emofuse.encoders.registry import build_encoder

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    encoder = build_encoder(spec, modality)
    record = store.root / modality / "encoders" / f"{fingerprint}.json"
    if encoder.needs_fit:
        if not record.exists():
            raise FeatureStoreError(
                f"{record}: no {modality} encoder with fingerprint {fingerprint} in {store.root}"
            )
        info = json.loads(record.read_text(encoding="utf-8"))
        if info["spec"] != spec:
            raise FeatureStoreError(f"{record}: recorded spec {info['spec']!r}, asked for {spec!r}")
        for part, entry in zip(encoder.parts(), info["parts"], strict=True):
            if part.needs_fit:
                state = store.root / modality / entry["dir"] / "state"
                if not (state / "DONE").exists():
                    raise FeatureStoreError(f"{state}: no saved fitted state for {part.spec}")
                part.load_state(state)
    if encoder.fingerprint() != fingerprint:
        raise FeatureStoreError(
            f"{spec}: rebuilt encoder has fingerprint {encoder.fingerprint()}, expected "
            f"{fingerprint} (different code version or settings?)"
        )
    return encoder
