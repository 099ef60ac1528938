"""Computing the vectors a store lacks: batches of similar length
(:mod:`emofuse.features.batching`), failures isolated per item, and one of three ways to
run them: an input pipeline beside the model for encoders that prepare their inputs
apart from it (the Hugging Face ones: :mod:`emofuse.features.loading`), a process pool
(``workers>1``, for CPU-bound encoders such as eGeMAPS) or this process; under
``accelerate launch``, one share of the missing keys per rank, each writing its own
shards. Shards are written by a background thread while the next batches are encoded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emofuse.audio_checks import NARROWBAND_BELOW_HZ
from emofuse.encoders.base import Encoder, EncoderError
from emofuse.encoders.hf_inputs import PreparedInputEncoder
from emofuse.features.batching import batch_limits, length_batches
from emofuse.features.io import Failure, FeatureStoreError, PartDir
from emofuse.features.loading import PreparedBatch, auto_workers, load_waves, prepared_batches
from emofuse.features.options import ExtractOptions
from emofuse.isolation import isolate_failures
from emofuse.modalities import SPEECH
from emofuse.workers import with_parent_watch

#: When this many items failed and none succeeded, the run stops: something systematic
#: (wrong model, wrong audio format) is wrong and recording every clip as failed hides it.
ABORT_AFTER_FAILURES = 50


# -- distributed ranks ---------------------------------------------------------------------
@dataclass
class Ranks:
    """This process's place among the extraction processes (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (``value`` itself in a single process)."""
        if self.state is None or self.world <= 1:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]


def current_ranks() -> Ranks:
    """This process's rank under ``accelerate launch`` (or torchrun); rank 0 of 1 otherwise.

    Accelerate (and torch) are imported only when launched with several processes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    import torch
    from accelerate import PartialState

    # On a machine without CUDA, `accelerate launch --multi_gpu` still starts the ranks;
    # cpu=True makes them join one gloo process group.
    state = PartialState(cpu=not torch.cuda.is_available())
    return Ranks(state.process_index, state.num_processes, state)


# -- encoding one batch (shared by the main process and pool workers) -----------------------
#: What one batch gives: keys, vectors, failures, and the narrowband clips among them.
BatchResult = tuple[list[str], np.ndarray, list[Failure], list[str]]


def _encode_items(
    encoder: Encoder,
    items: Sequence[tuple[str, str, tuple[str, ...]]],
    loaded: tuple[list, list, list[Failure], list[str]] | None = None,
) -> BatchResult:
    """Encode one batch; a failing item is isolated and recorded, never fatal."""
    if encoder.modality == SPEECH:
        ok, inputs, failures, narrowband = (
            loaded if loaded is not None else load_waves(items, encoder.sample_rate_hz)
        )
    else:
        ok = [(key, ids, "") for key, _, ids in items]
        inputs, failures, narrowband = [payload for _, payload, _ in items], [], []
    if not ok:
        return [], np.zeros((0, encoder.dim), dtype=np.float32), failures, narrowband
    # An encoder error (a broken encoder, a wrong shape) stops the run; anything else
    # fails the item(s) at fault alone.
    attempts = isolate_failures(
        lambda batch: _checked(encoder, encoder.encode(list(batch)), len(batch)),
        inputs,
        Exception,
        fatal=(EncoderError,),
    )
    vectors, kept = [], []
    for entry, attempt in zip(ok, attempts, strict=True):
        if attempt.error is None:
            vectors.append(attempt.value)
            kept.append(entry)
        else:
            error = attempt.error
            failures.append(Failure(*entry, f"encoder error: {type(error).__name__}: {error}"))
    matrix = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), dtype=np.float32)
    return _finite(kept, matrix, failures, narrowband)


def _finite(
    kept: list, matrix: np.ndarray, failures: list[Failure], narrowband: list[str]
) -> BatchResult:
    """The batch's result, a row with NaN or infinite values recorded as a failure."""
    finite = np.isfinite(matrix).all(axis=1)
    for (key, ids, path), good in zip(kept, finite, strict=True):
        if not good:
            failures.append(Failure(key, ids, path, "encoder gave NaN or infinite values"))
    keys = [entry[0] for entry, good in zip(kept, finite, strict=True) if good]
    return keys, matrix[finite], failures, narrowband


def _encode_prepared(encoder: Encoder, batch: PreparedBatch) -> BatchResult:
    """Encode a batch the input pipeline prepared, in one call. When the plan or that
    call failed for a reason other than an encoder error, the batch is encoded again
    from its raw items, which isolates the item(s) at fault (:func:`_encode_items`)."""
    if not batch.ok:
        return [], np.zeros((0, encoder.dim), dtype=np.float32), batch.failures, batch.narrowband
    assert isinstance(encoder, PreparedInputEncoder)
    if batch.plan_error is None:
        try:
            matrix = _checked(encoder, encoder.encode_prepared(batch.inputs), len(batch.ok))
        except EncoderError:
            raise
        except Exception:
            pass  # item by item, below
        else:
            return _finite(batch.ok, matrix, list(batch.failures), batch.narrowband)
    if encoder.modality != SPEECH:
        return _encode_items(encoder, batch.items)
    loaded = (batch.ok, batch.raw_inputs(), list(batch.failures), batch.narrowband)
    return _encode_items(encoder, batch.items, loaded)


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


def _worker_encode(items: list[tuple[str, str, tuple[str, ...]]]) -> BatchResult:
    assert _WORKER_ENCODER is not None, "worker not initialised"
    return _encode_items(_WORKER_ENCODER, items)


# -- the extraction loop -------------------------------------------------------------------
def _batch_results(
    part: Encoder, pdir: PartDir, batches: list[list], options: ExtractOptions
) -> Iterator[BatchResult]:
    workers = options.workers
    if workers <= 1 and isinstance(part, PreparedInputEncoder):
        loader_workers = options.loader_workers
        if loader_workers is None:
            loader_workers = auto_workers(part, current_ranks().world)
        ready = prepared_batches(part, part.modality, batches, loader_workers)
        with contextlib.closing(ready):  # loader processes stop with this generator
            for batch in ready:
                yield _encode_prepared(part, batch)
        return
    if workers <= 1:
        yield from _serial_results(part, batches)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold torch/openSMILE threads that fork would copy
    # mid-lock. Workers import the part's module so plug-in encoders are registered.
    modules = sorted({type(part).__module__} - {"__main__"})
    state = str(pdir.state_dir) if part.needs_fit else None
    # with_parent_watch: the workers die with this process, even when it is SIGKILLed.
    initializer, initargs = with_parent_watch(
        _worker_init, (part.spec, part.modality, state, modules)
    )
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer,
        initargs=initargs,
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


def _serial_results(part: Encoder, batches: list[list]) -> Iterator[BatchResult]:
    if part.modality != SPEECH:
        for batch in batches:
            yield _encode_items(part, batch)
        return
    # Read the next batch's audio on a thread while this one is encoded.
    with ThreadPoolExecutor(max_workers=1) as loader:
        future = loader.submit(load_waves, batches[0], part.sample_rate_hz) if batches else None
        for i, batch in enumerate(batches):
            loaded = future.result()
            future = (
                loader.submit(load_waves, batches[i + 1], part.sample_rate_hz)
                if i + 1 < len(batches)
                else None
            )
            yield _encode_items(part, batch, loaded)


class _ShardWriter:
    """Buffers vectors and writes them ``shard_size`` at a time, on a background thread
    (one shard in flight at most, so memory stays flat; an error is raised at the next
    write or at :meth:`flush`, which waits for the last one)."""

    def __init__(self, pdir: PartDir, rank: int, shard_size: int):
        self.pdir, self.rank, self.shard_size = pdir, rank, shard_size
        self.number = pdir.next_shard_number(rank)
        self.keys: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.written = 0
        self._thread: ThreadPoolExecutor | None = None  # started on the first write
        self._pending: Future | None = None

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
        """Write what is buffered and wait until every shard is on disk."""
        try:
            if self.keys:
                self._write(len(self.keys))
            self._wait()
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # raises the write's error, if any

    def _write(self, n: int) -> None:
        vectors = np.concatenate(self.vectors)
        self._wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emofuse-shards")
        self._pending = self._thread.submit(
            self.pdir.write_shard, self.rank, self.number, self.keys[:n], vectors[:n]
        )
        self.written += n
        self.number += 1
        self.keys, self.vectors = self.keys[n:], [vectors[n:]]


def compute_missing(
    pdir: PartDir,
    part: Encoder,
    share: pd.DataFrame,
    *,
    rank: int,
    options: ExtractOptions,
    progress: bool,
) -> None:
    """Encode ``share`` (rows of :func:`~emofuse.features.keys.key_items`) into shards of
    ``pdir``, recording failures; whatever stops the loop, finished vectors are kept and
    loader processes are stopped."""
    from tqdm import tqdm

    limits = batch_limits(part, options.batch_size, options.batch_seconds)
    batches = length_batches(share, limits)
    writer = _ShardWriter(pdir, rank, options.shard_size)
    ids_by_key = dict(zip(share["key"], share["ids"], strict=True))
    n_ok = n_failed = 0
    narrowband: list[str] = []
    unit = "clip" if part.modality == SPEECH else "text"
    bar = tqdm(
        total=len(share),
        desc=f"{part.modality} {part.spec}",
        unit=unit,
        disable=not progress,
        smoothing=0.1,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    # closing: after an error the generator, and the loader processes or the reading
    # thread it owns, stop now rather than when a held traceback lets them go.
    try:
        with contextlib.closing(_batch_results(part, pdir, batches, options)) as results:
            for keys, vectors, failures, narrow in results:
                narrowband += narrow
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
    if narrowband:  # encoded, but the user should know (emofuse.audio_checks, Narrowband)
        print(
            f"note: {part.spec}: {len(narrowband)} clip(s) recorded below "
            f"{NARROWBAND_BELOW_HZ} Hz (narrowband, e.g. telephone audio; first: "
            f"{narrowband[0]}) were upsampled to {part.sample_rate_hz} Hz: they hold nothing "
            "above half their own rate",
            file=sys.stderr,
        )
