"""The feature store: every vector computed once, kept on disk, read back in table order.

Vectors are keyed by (encoder part fingerprint, row key; see :mod:`emofuse.features.keys`).
A concatenation (``egemaps+resemblyzer``) is stored part by part, so adding a part never
recomputes the others. :mod:`emofuse.features.io` describes the on-disk layout and why a
kill loses at most the vectors not yet in a shard (the shard being written in the
background and the one being filled); :mod:`emofuse.features.compute` computes what is
missing.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.encoders.base import Encoder
from emofuse.features.compute import Ranks, compute_missing, current_ranks
from emofuse.features.io import (
    FORMAT_VERSION,
    Failure,
    FeatureStoreError,
    PartDir,
    check_writable,
    save_part_state,
    slug,
    store_writes,
)
from emofuse.features.keys import SPEECH_KEY_SCHEME, TEXT_KEY_SCHEME, key_items, row_keys
from emofuse.features.lock import run_lock
from emofuse.features.options import ExtractOptions
from emofuse.modalities import SPEECH, TEXT

#: Directory-name tag per key scheme: text directories keyed by an older scheme
#: (sha1 of the casefolded, punctuation-stripped text) are left alone, not misread.
KEY_TAGS = {SPEECH: "", TEXT: "-clean"}


class MissingFeaturesError(FeatureStoreError, LookupError):
    """Vectors asked for with :meth:`FeatureStore.get` that the store does not hold."""


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
    #: per item (clip or distinct text) of the table: 0 cached, 1 computed now, 2 missing
    states: np.ndarray | None = field(default=None, repr=False)


@dataclass
class ExtractReport:
    """Totals over the parts of one encoder. ``computed``/``cached``/``failed`` count
    vectors (part x item); :meth:`item_counts` counts items (clips, or distinct texts): an
    item failed when a part lacks it, was computed when a part computed it now, else cached."""

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

    def item_counts(self) -> dict[str, int]:
        """``items``, ``computed``, ``cached``, ``failed``, counted in items, not vectors."""
        known = [p.states for p in self.parts if p.states is not None]
        states = np.maximum.reduce(known) if known else np.zeros(0, dtype=np.int8)
        counts = np.bincount(states, minlength=3)
        return {"items": len(states), "computed": int(counts[1]), "cached": int(counts[0]),
                "failed": int(counts[2])}  # fmt: skip

    def to_text(self, max_failures: int = 10) -> str:
        n = self.item_counts()
        unit = "clips" if self.modality == SPEECH else "distinct texts"
        lines = [
            f"{self.modality} {self.spec}: {n['computed']} computed, {n['cached']} cached, "
            f"{n['failed']} failed of {n['items']} {unit} in {self.seconds:.1f} s"
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
        suffix = KEY_TAGS[part.modality] + ("-f16" if self.float16 else "")
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
            "key": SPEECH_KEY_SCHEME if part.modality == SPEECH else TEXT_KEY_SCHEME,
            "fitted": bool(part.needs_fit),
        }
        if part.modality == TEXT:
            meta["text_encoded"] = "emofuse.text.clean_text(text), the text the key hashes"
        return PartDir(path, meta)

    def state_dir(self, part: Encoder) -> Path:
        """Where a fitted part's state is kept (bundles copy it from here)."""
        return self.part_dir(part).state_dir

    def prepare_part(self, part: Encoder, ranks: Ranks) -> PartDir:
        """Create (rank 0) or check ``part``'s directory, saving fitted state once."""
        if part.needs_fit and not part.is_fitted:
            raise FeatureStoreError(
                f"{part.spec} must be fitted on training text before extraction "
                "(use extract_features(..., fit_table=train_rows))"
            )
        pdir = self.part_dir(part)
        if ranks.is_main:
            if not pdir.exists():
                check_writable(self.root, pdir.path)
            pdir.create()
            if part.needs_fit and not (pdir.state_dir / "DONE").exists():
                save_part_state(part, pdir.state_dir)
        ranks.wait()
        if not ranks.is_main:
            pdir.check_meta()
        return pdir

    # -- extraction --------------------------------------------------------------------
    def ensure(
        self,
        table: pd.DataFrame,
        encoder: Encoder,
        *,
        batch_size: int | None = None,
        shard_size: int = 512,
        progress: bool = True,
        workers: int = 1,
        retry_failed: bool = False,
        batch_seconds: float | None = None,
        loader_workers: int | None = None,
        options: ExtractOptions | None = None,
    ) -> ExtractReport:
        """Compute the vectors of ``table`` that the store lacks, part by part. Batching
        and loader options (:class:`~emofuse.features.options.ExtractOptions`): as
        ``options`` or as the keywords of the same names, not both."""
        given = ExtractOptions(batch_size, batch_seconds, shard_size, workers, loader_workers)
        if options is None:
            options = given
        elif given != ExtractOptions():
            raise ValueError("pass the batching and loader options as options= or as keywords")
        start = time.perf_counter()
        ranks = current_ranks()
        items = key_items(table, encoder.modality)
        report = ExtractReport(encoder.modality, encoder.spec)
        # An OSError while writing (read-only mount, full disk) is one line naming the store.
        with store_writes(self.root), contextlib.ExitStack() as held:
            for part in encoder.parts():  # another run filling a folder: refused before any work
                held.enter_context(run_lock(self.prepare_part(part, ranks).path, ranks))
            for part in encoder.parts():
                report.parts.append(
                    self._ensure_part(items, part, ranks, options, progress, retry_failed)
                )
        report.seconds = time.perf_counter() - start
        return report

    def _ensure_part(
        self,
        items: pd.DataFrame,
        part: Encoder,
        ranks: Ranks,
        options: ExtractOptions,
        progress: bool,
        retry_failed: bool,
    ) -> PartReport:
        start = time.perf_counter()
        pdir = self.prepare_part(part, ranks)
        present = pdir.index().positions(items["key"]) >= 0
        known_failures = pdir.failures()
        failed_before = items["key"].isin(list(known_failures)).to_numpy() & ~present
        todo = ~present & (~failed_before if not retry_failed else True)
        missing = items[todo]
        # Every rank must see the same store before anyone writes, or the shares differ.
        ranks.wait()
        share = missing.sort_values("key").iloc[ranks.rank :: ranks.world]
        if len(share):
            check_writable(self.root, pdir.path)  # before the work, not after it
            compute_missing(
                pdir,
                part,
                share,
                rank=ranks.rank,
                options=options,
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
            states=np.where(now_present, (now_present & todo).astype(np.int8), 2),
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
