"""The input pipeline of feature extraction: every batch read and made ready for the
model *beside* it, so that the model (a GPU) never waits for the CPU.

For speech, the clips of a batch are read, decoded, checked and resampled
(:func:`load_waves`, the rules of :mod:`emofuse.audio_checks`), then split, padded and
stacked by the encoder's input plan (:mod:`emofuse.encoders.hf_inputs`); for text, the
plan tokenises and pads. A torch ``DataLoader`` does it in ``workers`` processes a few
batches ahead (in page-locked memory when the model is on CUDA, so the copy to it does
not block); with ``workers=0`` one thread of this process reads one batch ahead, as
extraction always did. The model loads while the first batches are read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emofuse.encoders.base import EncoderError
from emofuse.encoders.hf_inputs import PreparedInputEncoder
from emofuse.features.batching import Item
from emofuse.features.io import Failure
from emofuse.modalities import SPEECH
from emofuse.workers import auto_loader_workers, die_with_owner

#: Batches each loader process keeps ready.
PREFETCH_BATCHES = 2

#: An item the model can take: (key, ids, audio path or "" for text).
Ready = tuple[str, tuple[str, ...], str]


def read_waves(
    paths: Sequence[str], sample_rate_hz: int
) -> tuple[list[int], list[np.ndarray], list[tuple[int, str]], list[int]]:
    """The clips at ``paths`` read at ``sample_rate_hz``: the positions read, their waves,
    ``(position, reason)`` of each failure, and the positions of narrowband clips."""
    from emofuse import audio_checks
    from emofuse.audio import load_audio

    # The rules of emofuse.audio_checks: clips longer than MAX_CLIP_S are refused from
    # the header, before decoding, and so are mis-scaled (far too loud) and truncated
    # files: each a recorded failure naming the file. Narrowband clips are encoded.
    max_s = audio_checks.MAX_CLIP_S
    ok, waves, failures, narrowband = [], [], [], []
    for position, path in enumerate(paths):
        notes: list[str] = []
        try:
            wave = load_audio(
                path, sample_rate_hz, max_duration_s=max_s, long_policy="error", notes=notes
            )
        except Exception as error:  # AudioError, or anything a decoder throws
            failures.append((position, f"{type(error).__name__}: {error}"))
            continue
        truncated = [n for n in notes if n.startswith(audio_checks.TRUNCATED)]
        if truncated:  # the label describes audio that is not there: not for training
            failures.append((position, f"{truncated[0]}; re-copy the file"))
            continue
        if any(n.startswith(audio_checks.NARROWBAND) for n in notes):
            narrowband.append(position)
        waves.append(wave)
        ok.append(position)
    return ok, waves, failures, narrowband


def load_waves(
    items: Sequence[Item], sample_rate_hz: int
) -> tuple[list[Ready], list[np.ndarray], list[Failure], list[str]]:
    """The batch's waveforms at ``sample_rate_hz``: the items read, their waves, the
    failures (each naming the file), and the paths of narrowband clips (encoded)."""
    ok, waves, failed, narrow = read_waves([path for _, path, _ in items], sample_rate_hz)
    ready = [(items[i][0], items[i][2], items[i][1]) for i in ok]
    failures = [Failure(items[i][0], items[i][2], items[i][1], why) for i, why in failed]
    return ready, waves, failures, [items[i][1] for i in narrow]


@dataclass
class PreparedBatch:
    """One batch made ready for the model: ``inputs`` (the plan's output, None when no
    item could be read or the plan failed) for the items in ``ok``; the rest failed.
    When the plan failed (``plan_error``), ``waves`` holds the clips read, for encoding
    item by item, so that the item at fault fails alone."""

    items: list[Item]
    ok: list[Ready]
    inputs: Any
    failures: list[Failure] = field(default_factory=list)
    narrowband: list[str] = field(default_factory=list)
    waves: list[np.ndarray] | None = None
    plan_error: str | None = None

    def raw_inputs(self) -> list[Any]:
        """The items' waveforms or texts, as ``encode()`` takes them (to find a bad item)."""
        if self.waves is not None:
            return self.waves
        if self.inputs is not None and hasattr(self.inputs, "waves"):
            return self.inputs.waves()
        return [payload for _, payload, _ in self.items]


@dataclass
class _Prepared:
    """What a loader process sends back for batch ``index``: positions within the batch
    rather than its items, which the command holds already."""

    index: int
    ok: list[int]
    inputs: Any
    failures: list[tuple[int, str]]
    narrowband: list[int]
    waves: list[np.ndarray] | None = None
    plan_error: str | None = None

    def pin_memory(self) -> _Prepared:
        """Called by the DataLoader's pinning thread (CUDA only)."""
        inputs = self.inputs
        if isinstance(inputs, dict):
            inputs = {key: value.pin_memory() for key, value in inputs.items()}
        elif inputs is not None:
            inputs = inputs.pin_memory()
        return dataclasses.replace(self, inputs=inputs)

    def for_items(self, items: list[Item], speech: bool) -> PreparedBatch:
        """The batch of ``items`` (the ones batch ``index`` was made of)."""
        ok = [(items[i][0], items[i][2], items[i][1] if speech else "") for i in self.ok]
        failures = [Failure(items[i][0], items[i][2], items[i][1], why) for i, why in self.failures]
        narrowband = [items[i][1] for i in self.narrowband]
        return PreparedBatch(
            items, ok, self.inputs, failures, narrowband, self.waves, self.plan_error
        )


class _Batches:
    """A map-style dataset whose item ``i`` is batch ``i`` prepared. It holds the
    batches' payloads (paths or texts) as one UTF-8 buffer plus offset arrays, not the
    items: pickled into each loader process (spawn, forkserver), and under fork shared
    without the per-object reference counts that would copy every page."""

    def __init__(self, batches: list[list[Item]], plan: Any, modality: str, rate_hz: int):
        encoded = [payload.encode("utf-8", "surrogatepass") for b in batches for _, payload, _ in b]
        self.blob = b"".join(encoded)
        self.ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self.batch_ends = np.cumsum([len(b) for b in batches], dtype=np.int64)
        self.plan, self.modality, self.rate_hz = plan, modality, rate_hz

    def __len__(self) -> int:
        return len(self.batch_ends)

    def payloads(self, index: int) -> list[str]:
        first = int(self.batch_ends[index - 1]) if index else 0
        start = int(self.ends[first - 1]) if first else 0
        out = []
        for end in self.ends[first : int(self.batch_ends[index])]:
            out.append(self.blob[start:end].decode("utf-8", "surrogatepass"))
            start = int(end)
        return out

    def __getitem__(self, index: int) -> _Prepared:
        payloads = self.payloads(index)
        if self.modality == SPEECH:
            ok, raw, failures, narrowband = read_waves(payloads, self.rate_hz)
        else:
            ok, raw, failures, narrowband = list(range(len(payloads))), payloads, [], []
        if not raw:
            return _Prepared(index, ok, None, failures, narrowband)
        try:
            inputs = self.plan(raw)
        except EncoderError:  # a broken encoder: the same for every batch, stops the run
            raise
        except Exception as error:  # one bad item: the command encodes item by item
            waves = raw if self.modality == SPEECH else None
            why = f"{type(error).__name__}: {error}"
            return _Prepared(index, ok, None, failures, narrowband, waves, why)
        return _Prepared(index, ok, inputs, failures, narrowband)


def _device_type(part: Any) -> str:
    device = getattr(part, "device", None)
    return device.type if device is not None else "cpu"


def auto_workers(part: PreparedInputEncoder, processes: int = 1) -> int:
    """Loader processes for ``part`` when not given
    (:func:`~emofuse.workers.auto_loader_workers`)."""
    return auto_loader_workers(_device_type(part), processes)


def _worker_start(owner_pid: int, _worker_id: int) -> None:
    die_with_owner(owner_pid)  # a loader process never outlives the command (even on SIGKILL)


def prepared_batches(
    part: PreparedInputEncoder,
    modality: str,
    batches: list[list[Item]],
    workers: int,
    start_method: str | None = None,
) -> Iterator[PreparedBatch]:
    """``batches`` prepared in order by ``workers`` processes (0: one thread), while the
    model loads and works. ``start_method``: how loader processes start (None: the
    platform's default; "spawn" and "forkserver" work too).

    Close the generator when done with it (``contextlib.closing``): that stops the
    loader processes or the reading thread at once, even after an error, rather than
    whenever the generator is collected."""
    import torch

    rate_hz = int(getattr(part, "sample_rate_hz", 0))
    dataset = _Batches(batches, part.input_plan(), modality, rate_hz)
    pin = _device_type(part) == "cuda"
    speech = modality == SPEECH
    if workers <= 0:
        reader = _ReadAhead(dataset, pin)  # starts reading now ...
        try:
            part.load()  # ... while the model loads
            for prepared in reader:
                yield prepared.for_items(batches[prepared.index], speech)
        finally:
            reader.close()
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,  # each dataset item is a whole batch
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=PREFETCH_BATCHES,
        persistent_workers=False,  # one pass: nothing to keep them for
        worker_init_fn=functools.partial(_worker_start, os.getpid()),
        multiprocessing_context=start_method,
    )
    batches_ready = iter(loader)  # the workers start reading now ...
    try:
        part.load()  # ... while the model loads
        for prepared in batches_ready:
            yield prepared.for_items(batches[prepared.index], speech)
    finally:
        # At once, not when the iterator is collected: a traceback held after an error
        # (its frames reference the iterator) would otherwise keep the workers alive.
        shutdown = getattr(batches_ready, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del batches_ready


class _ReadAhead:
    """``dataset`` in order, read by one thread ``depth`` batches ahead: the thread starts
    at once; :meth:`close` stops it (whether or not everything was read)."""

    def __init__(self, dataset: _Batches, pin: bool, depth: int = 1):
        self.dataset, self.pin = dataset, pin
        self.ready: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="emofuse-read-ahead", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for index in range(len(self.dataset)):
            try:
                batch = self.dataset[index]
                result: tuple[str, Any] = ("ok", batch.pin_memory() if self.pin else batch)
            except BaseException as error:  # handed to the consumer, raised there
                result = ("error", error)
            while not self.stop.is_set():
                try:
                    self.ready.put(result, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if self.stop.is_set() or result[0] == "error":
                return

    def __iter__(self) -> Iterator[_Prepared]:
        for _ in range(len(self.dataset)):
            kind, value = self.ready.get()
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
