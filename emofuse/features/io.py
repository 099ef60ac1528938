"""On-disk layout of one encoder part in the feature store, and its crash-safe I/O.

One directory per (part fingerprint, storage dtype)::

    <root>/<modality>/<spec-slug>-<fingerprint>[-f16]/
        encoder.json                 what the vectors are: spec, config, dim, dtype, key scheme
        state/                       fitted state (TF-IDF vocabulary ...), when the part has any
        shards/shard-r<rank>-<n>.npz keys (str) + vectors (n, dim), each written atomically
        failures/failures-r<rank>.jsonl  one JSON line per key that could not be encoded
        index/index.npz              a cache of which key is in which shard row
        run.lock                     the run filling the folder now (pid; features/lock.py)

Shards are the only truth. They are written to a temporary name, fsynced and renamed, so a
reader sees a whole shard or none; the index is rebuilt from the shards present whenever
they differ from what it lists. A kill at any moment therefore loses at most the vectors
not yet in a shard.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from emofuse.encoders.base import Encoder

FORMAT_VERSION = 1
SHARD_RE = re.compile(r"^shard-r(\d+)-(\d+)\.npz$")
#: Fields of encoder.json that must agree before a directory's vectors are reused.
IDENTITY_FIELDS = ("format", "modality", "name", "spec", "config", "dim", "dtype", "key")


class FeatureStoreError(RuntimeError):
    """A feature store that cannot be used as asked (mismatch, corrupt shard, bad input)."""


@dataclass(frozen=True)
class Failure:
    """One key that could not be encoded: the file (or ids) involved and why."""

    key: str
    ids: tuple[str, ...]
    file: str
    reason: str
    part: str = ""

    def describe(self) -> str:
        where = self.file or ", ".join(self.ids[:3])
        return self.reason if where and where in self.reason else f"{where}: {self.reason}"


def slug(text: str, max_chars: int = 48) -> str:
    """A file-name-safe, still readable form of a spec (``facebook/wav2vec2`` -> ``facebook_wav2vec2``)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return (out or "encoder")[:max_chars]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on every platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def unwritable_message(root: Path, error: OSError | None = None) -> str:
    """One line naming the store folder and what stops it from being written."""
    if error is None or error.errno in _NOT_WRITABLE:
        where = f" ({error.strerror}: {error.filename})" if error is not None else ""
        return (
            f"{root}: the feature store is read-only or not writable{where}; the vectors it "
            "lacks cannot be stored. Use --store with a writable folder (or a writable copy)"
        )
    return (
        f"{root}: cannot write to the feature store ({error.strerror or error}"
        f"{': ' + str(error.filename) if error.filename else ''})"
    )


def check_writable(root: Path, path: Path) -> None:
    """Refuse, before any work, a store that cannot take new files at ``path`` (or, when it
    does not exist yet, in the nearest folder above it that does). ``os.access`` sees
    permissions and read-only mounts; :func:`store_writes` catches what it cannot."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FeatureStoreError(unwritable_message(root))


@contextlib.contextmanager
def store_writes(root: Path) -> Iterator[None]:
    """An OSError of the store's own files inside (permission denied, read-only file
    system, disk full) becomes a one-line :class:`FeatureStoreError` naming the store
    folder; an OSError about anything else passes through unchanged."""
    try:
        yield
    except FeatureStoreError:
        raise
    except OSError as error:
        if not _about_store(root, error):
            raise
        raise FeatureStoreError(unwritable_message(root, error)) from error


def _about_store(root: Path, error: OSError) -> bool:
    names = [
        n for n in (error.filename, error.filename2) if isinstance(n, str | bytes | os.PathLike)
    ]
    if not names:  # a write() on an open handle names no file: a full disk, a quota
        return error.errno in (*_NOT_WRITABLE, errno.ENOSPC, errno.EDQUOT)
    base = Path(os.path.abspath(root))
    return any(Path(os.path.abspath(os.fsdecode(n))).is_relative_to(base) for n in names)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via a temporary file in the same directory, fsync, then rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, payload: Any) -> None:
    """:func:`atomic_write` of pretty, sorted JSON."""
    data = (json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    atomic_write(path, lambda handle: handle.write(data))


@dataclass
class ShardIndex:
    """Which key lives in which shard row (first shard by name wins for a repeated key)."""

    shards: list[str] = field(default_factory=list)
    keys: pd.Index = field(default_factory=lambda: pd.Index([], dtype=object))
    shard_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    row_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def positions(self, keys: Iterable[str]) -> np.ndarray:
        """Index position of each key, -1 where absent."""
        return self.keys.get_indexer(pd.Index(list(keys), dtype=object))


class PartDir:
    """The directory of one encoder part: metadata, shards, failures, index and state."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        # The layout in the module docstring.
        self.meta_path = self.path / "encoder.json"
        self.state_dir = self.path / "state"
        self.shards_dir = self.path / "shards"
        self.failures_dir = self.path / "failures"
        self.index_path = self.path / "index" / "index.npz"

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    # -- metadata ----------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta_path.exists()

    def check_meta(self) -> None:
        """Raise when an existing encoder.json describes other vectors than ``self.meta``."""
        try:
            found = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise FeatureStoreError(
                f"{self.meta_path}: unreadable ({error}); delete the directory to recompute"
            ) from error
        wanted = json.loads(json.dumps(self.meta))  # same JSON normalisation as on disk
        diffs = [f for f in IDENTITY_FIELDS if found.get(f) != wanted.get(f)]
        if diffs:
            detail = "; ".join(
                f"{f}: stored {found.get(f)!r} vs now {wanted.get(f)!r}" for f in diffs
            )
            raise FeatureStoreError(
                f"{self.meta_path}: this directory holds other vectors than the encoder asks "
                f"for ({detail}). The directory name should have differed; delete it to recompute"
            )

    def create(self) -> None:
        """Make the directory and its encoder.json (or check the one already there)."""
        if self.exists():
            self.check_meta()
            return
        for sub in (self.shards_dir, self.failures_dir, self.index_path.parent):
            sub.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.meta_path, {**self.meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )

    # -- shards ------------------------------------------------------------------------
    def shard_files(self) -> list[Path]:
        if not self.shards_dir.is_dir():
            return []
        return sorted(p for p in self.shards_dir.iterdir() if SHARD_RE.match(p.name))

    def next_shard_number(self, rank: int) -> int:
        numbers = [
            int(m.group(2))
            for p in self.shard_files()
            if (m := SHARD_RE.match(p.name)) and int(m.group(1)) == rank
        ]
        return max(numbers, default=-1) + 1

    def write_shard(self, rank: int, number: int, keys: list[str], vectors: np.ndarray) -> Path:
        if len(keys) != len(vectors) or vectors.shape[1:] != (self.dim,):
            raise FeatureStoreError(
                f"{self.path}: shard of {len(keys)} keys and vectors of shape {vectors.shape} "
                f"(expected (n, {self.dim}))"
            )
        path = self.shards_dir / f"shard-r{rank}-{number:06d}.npz"
        if path.exists():
            raise FeatureStoreError(f"{path}: already exists (two writers with the same rank?)")
        key_array = np.asarray(keys, dtype=str)
        data = np.ascontiguousarray(vectors, dtype=self.dtype)
        atomic_write(path, lambda handle: np.savez(handle, keys=key_array, vectors=data))
        return path

    def _read_shard(self, path: Path, member: str) -> np.ndarray:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return npz[member]
        except Exception as error:  # zipfile/ValueError/OSError: a damaged file
            raise FeatureStoreError(
                f"{path}: unreadable shard ({type(error).__name__}: {error}); delete it and "
                "run the extraction again to recompute its vectors"
            ) from error

    def index(self) -> ShardIndex:
        """The index of the shards present now, from the cache when it is still true."""
        files = self.shard_files()
        stats = {p.name: p.stat() for p in files}
        cached = self._load_index_cache()
        per_shard: dict[str, np.ndarray] = {}
        if cached is not None:
            for name, size, mtime, keys in cached:
                st = stats.get(name)
                if st is not None and st.st_size == size and st.st_mtime_ns == mtime:
                    per_shard[name] = keys
        changed = cached is None or len(per_shard) != len(files) or len(cached) != len(files)
        for p in files:
            if p.name not in per_shard:
                per_shard[p.name] = self._read_shard(p, "keys")
        names = [p.name for p in files]
        if changed and self.index_path.parent.is_dir():
            self._save_index_cache(names, stats, per_shard)
        return _build_index(names, per_shard)

    def _load_index_cache(self) -> list[tuple[str, int, int, np.ndarray]] | None:
        if not self.index_path.exists():
            return None
        try:
            with np.load(self.index_path, allow_pickle=False) as npz:
                names, sizes, mtimes = npz["shards"], npz["sizes"], npz["mtimes"]
                counts, keys = npz["counts"], npz["keys"]
        except Exception:  # a stale or foreign cache is simply rebuilt
            return None
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [
            (str(n), int(s), int(m), keys[bounds[i] : bounds[i + 1]])
            for i, (n, s, m) in enumerate(zip(names, sizes, mtimes, strict=True))
        ]

    def _save_index_cache(
        self, names: list[str], stats: dict[str, os.stat_result], per_shard: dict[str, np.ndarray]
    ) -> None:
        keys = [per_shard[n] for n in names]
        payload = {
            "shards": np.asarray(names, dtype=str),
            "sizes": np.asarray([stats[n].st_size for n in names], dtype=np.int64),
            "mtimes": np.asarray([stats[n].st_mtime_ns for n in names], dtype=np.int64),
            "counts": np.asarray([len(k) for k in keys], dtype=np.int64),
            "keys": np.concatenate(keys).astype(str) if keys else np.zeros(0, dtype=str),
        }
        # The cache is an optimisation: a read-only store still works without it.
        with contextlib.suppress(OSError):
            atomic_write(self.index_path, lambda handle: np.savez(handle, **payload))

    def read_vectors(self, index: ShardIndex, positions: np.ndarray) -> np.ndarray:
        """float32 vectors for index positions (all >= 0), in the order given."""
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        shard_ids = index.shard_of[positions]
        rows = index.row_of[positions]
        for shard_id in np.unique(shard_ids):
            where = np.flatnonzero(shard_ids == shard_id)
            path = self.shards_dir / index.shards[shard_id]
            vectors = self._read_shard(path, "vectors")
            out[where] = vectors[rows[where]]
        return out

    # -- failures ----------------------------------------------------------------------
    def record_failures(self, rank: int, failures: list[Failure]) -> None:
        if not failures:
            return
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        path = self.failures_dir / f"failures-r{rank}.jsonl"
        lines = "".join(
            json.dumps(
                {
                    "key": f.key,
                    "ids": list(f.ids),
                    "file": f.file,
                    "reason": f.reason,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
                ensure_ascii=False,
            )
            + "\n"
            for f in failures
        )
        with open(path, "ab") as handle:
            # A kill mid-append leaves a line without its newline: start on a fresh line
            # so the next record is not glued to (and lost with) the torn one.
            if handle.tell() and not _ends_with_newline(path):
                handle.write(b"\n")
            handle.write(lines.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def failures(self) -> dict[str, Failure]:
        """Recorded failures by key (the latest record wins; a torn last line is skipped)."""
        found: dict[str, Failure] = {}
        if not self.failures_dir.is_dir():
            return found
        for path in sorted(self.failures_dir.glob("failures-r*.jsonl")):
            # errors="replace": a torn last line may end inside a multi-byte character.
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    found[rec["key"]] = Failure(
                        key=rec["key"],
                        ids=tuple(rec.get("ids", ())),
                        file=rec.get("file", ""),
                        reason=rec.get("reason", ""),
                        part=str(self.meta.get("spec", "")),
                    )
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill
        return found


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _build_index(names: list[str], per_shard: dict[str, np.ndarray]) -> ShardIndex:
    if not names:
        return ShardIndex()
    keys = np.concatenate([per_shard[n] for n in names]).astype(object)
    shard_of = np.concatenate(
        [np.full(len(per_shard[n]), i, dtype=np.int32) for i, n in enumerate(names)]
    )
    row_of = np.concatenate([np.arange(len(per_shard[n]), dtype=np.int32) for n in names])
    first = ~pd.Index(keys).duplicated(keep="first")
    return ShardIndex(
        shards=names,
        keys=pd.Index(keys[first], dtype=object),
        shard_of=shard_of[first],
        row_of=row_of[first],
    )


def save_part_state(part: Encoder, state_dir: Path) -> None:
    """Save a fitted part's state, marking completion last so a half-written state is
    never loaded."""
    tmp = state_dir.with_name(f".state.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    part.save_state(tmp)
    (tmp / "DONE").write_text(part.fingerprint() + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    os.replace(tmp, state_dir)
