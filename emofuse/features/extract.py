"""Fitted text encoders (TF-IDF ...): fitted once on the training part's cleaned text,
their state kept in the store; and :func:`extract_features`, which builds the encoders,
fits them and fills the store.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emofuse.corpus.table import require_columns
from emofuse.encoders.base import Encoder, stable_hash
from emofuse.encoders.hf_inputs import PreparedInputEncoder
from emofuse.features.compute import Ranks, current_ranks
from emofuse.features.io import (
    FeatureStoreError,
    atomic_write_json,
    check_writable,
    slug,
    store_writes,
)
from emofuse.features.options import ExtractOptions
from emofuse.features.store import ExtractReport, FeatureStore
from emofuse.modalities import SPEECH, TEXT
from emofuse.text import clean_text


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(str(text).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def fit_part(
    store: FeatureStore,
    part: Encoder,
    texts: list[str],
    ranks: Ranks,
    labels: list[str] | None = None,
) -> None:
    """Fit ``part`` on ``texts`` (cleaned training text; with ``labels`` for encoders that
    need them) once; later calls with the same inputs reload the state saved in the
    store. Rank 0 fits, the others wait and reload."""
    try:
        settings = part.config()
    except Exception:  # some encoders only know their config once fitted
        settings = {}
    inputs = {"spec": part.spec, "name": part.name, "config": settings}
    inputs["texts"] = _texts_digest(texts)
    if labels is not None:
        inputs["labels"] = _texts_digest(labels)
    fit_id = stable_hash(inputs)
    record = store.root / part.modality / "fits" / f"{slug(part.spec)}-{fit_id}.json"
    if not record.exists() and ranks.is_main:
        check_writable(store.root, record)  # refuse before fitting, not after
        if labels is None:
            part.fit(texts)
        else:
            part.fit(texts, labels)
        with store_writes(store.root):
            store.prepare_part(part, Ranks())  # saves state/ and encoder.json
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
    try:
        info = json.loads(record.read_text(encoding="utf-8"))
        state = store.root / part.modality / str(info["dir"]) / "state"
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FeatureStoreError(
            f"{record}: unreadable fit record ({type(error).__name__}: {error}); delete it to refit"
        ) from error
    part.load_state(state)
    if part.fingerprint() != info["fingerprint"]:
        raise FeatureStoreError(
            f"{state}: reloaded state gives fingerprint {part.fingerprint()}, recorded "
            f"{info['fingerprint']} in {record}; delete both to refit"
        )


def default_precision(encoder: Encoder, store: FeatureStore | None = None) -> Encoder:
    """``encoder`` with feature extraction's default precision: bfloat16 autocast for each
    Hugging Face part on CUDA whose spec did not choose (see
    :meth:`~emofuse.encoders.hf_encoder.HFEncoder.use_default_autocast`). With ``store``,
    a note says when that leaves float32 vectors of the same model there unused."""
    for part in encoder.parts():
        use_default = getattr(part, "use_default_autocast", None)
        if use_default is not None and use_default() and store is not None:
            _note_float32_vectors(store, part)
    return encoder


def _note_float32_vectors(store: FeatureStore, part: Encoder) -> None:
    chosen = part.autocast  # type: ignore[attr-defined]
    part.autocast = None  # type: ignore[attr-defined]  # the float32 twin's folder
    try:
        twin = store.part_dir(part).path
    finally:
        part.autocast = chosen  # type: ignore[attr-defined]
    if (twin / "shards").is_dir() and any((twin / "shards").iterdir()):
        print(
            f"note: {part.spec}: on CUDA, extraction runs under bfloat16 autocast unless the "
            f"spec says otherwise, so the float32 vectors of this model in {twin} are not "
            "used and the vectors are computed again; add autocast=off to the spec to use them",
            file=sys.stderr,
        )


def _note_ignored_options(options: ExtractOptions, encoder: Encoder) -> None:
    """One note per option given that does nothing for ``encoder``."""
    notes = []
    if options.loader_workers is not None:
        if options.workers > 1:
            notes.append("loader_workers (--loader-workers) is ignored with workers > 1")
        elif not all(isinstance(part, PreparedInputEncoder) for part in encoder.parts()):
            notes.append(
                "loader_workers (--loader-workers) is used by Hugging Face encoders only; "
                "this one reads its batches in this process"
            )
    if options.batch_seconds is not None and encoder.modality != SPEECH:
        notes.append("batch_seconds (--batch-seconds) applies to speech only")
    for note in notes:
        print(f"note: {encoder.spec}: {note}", file=sys.stderr)


def fit_rows(table: pd.DataFrame, part: str = "train") -> pd.DataFrame | None:
    """The rows fitted encoders learn from: those of ``part``; None when the table has no
    ``part`` column or no such rows."""
    if "part" not in table.columns:
        return None
    rows = table[table["part"].astype(str) == part]
    return rows if len(rows) else None


def extract_features(
    table: pd.DataFrame,
    *,
    store: FeatureStore | str | Path,
    speech: str | Encoder | None = None,
    text: str | Encoder | None = None,
    fit_table: pd.DataFrame | None = None,
    batch_size: int | None = None,
    shard_size: int = 512,
    progress: bool = True,
    workers: int = 1,
    retry_failed: bool = False,
    reports: list[ExtractReport] | None = None,
    batch_seconds: float | None = None,
    loader_workers: int | None = None,
    options: ExtractOptions | None = None,
) -> dict[str, Encoder]:
    """Build encoders from specs, fit text encoders on ``fit_table`` (training rows only),
    and make sure the store holds every vector of ``table``.

    Returns ``{modality: encoder}`` (fitted; their fingerprints include the fitted state).
    Pass a list as ``reports`` to receive the :class:`ExtractReport` of each modality.
    Batching and loader options (:class:`~emofuse.features.options.ExtractOptions`): as
    ``options`` or as the keywords of the same names, not both.

    Precision: a Hugging Face model built here from a spec that does not say
    (``autocast=off`` or ``bf16``) runs under bfloat16 autocast when it is on CUDA
    (:func:`default_precision`); its spec and fingerprint say so, so those vectors never
    share a store directory with float32 ones. Encoders passed as objects are used as
    they are.
    """
    from emofuse.encoders.registry import build_encoder

    if speech is None and text is None:
        raise ValueError("extract_features needs a speech and/or a text encoder")
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    given = ExtractOptions(batch_size, batch_seconds, shard_size, workers, loader_workers)
    if options is None:
        options = given
    elif given != ExtractOptions():
        raise ValueError("pass the batching and loader options as options= or as keywords")
    ranks = current_ranks()
    encoders: dict[str, Encoder] = {}
    for modality, spec in ((SPEECH, speech), (TEXT, text)):
        if spec is None:
            continue
        if isinstance(spec, Encoder):
            encoder = spec
        else:
            encoder = default_precision(build_encoder(spec, modality), store)
        if encoder.modality != modality:
            raise FeatureStoreError(
                f"{encoder.spec} is a {encoder.modality} encoder, not {modality}"
            )
        _note_ignored_options(options, encoder)
        for part in encoder.parts():
            if part.needs_fit and not part.is_fitted:
                if fit_table is None or not len(fit_table):
                    raise FeatureStoreError(
                        f"{part.spec} must be fitted on training text: pass fit_table "
                        "(the training rows of a split)"
                    )
                columns = ["text", "label"] if part.needs_labels else ["text"]
                require_columns(fit_table, columns, "fit_table", FeatureStoreError)
                texts = [clean_text(t) for t in fit_table["text"]]
                labels = fit_table["label"].astype(str).tolist() if part.needs_labels else None
                fit_part(store, part, texts, ranks, labels)
        report = store.ensure(
            table, encoder, progress=progress, retry_failed=retry_failed, options=options
        )
        if reports is not None:
            reports.append(report)
        encoders[modality] = encoder
    return encoders
