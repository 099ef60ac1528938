"""How feature extraction batches and runs: one set of options handed from
:func:`~emofuse.features.extract.extract_features` through
:meth:`~emofuse.features.store.FeatureStore.ensure` down to the extraction loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractOptions:
    """``batch_size``/``batch_seconds``: the most items / padded seconds of audio per
    batch (None: :func:`~emofuse.features.batching.batch_limits`'s defaults);
    ``shard_size``: vectors per shard file; ``workers``: processes each running the
    encoder (for CPU-bound encoders such as eGeMAPS); ``loader_workers``: processes
    preparing batches beside the model, for encoders that prepare their inputs apart
    from it, the Hugging Face ones (None: :func:`~emofuse.features.loading.auto_workers`;
    used only with ``workers == 1``)."""

    batch_size: int | None = None
    batch_seconds: float | None = None
    shard_size: int = 512
    workers: int = 1
    loader_workers: int | None = None

    def __post_init__(self) -> None:
        if (
            (self.batch_size is not None and self.batch_size < 1)
            or self.shard_size < 1
            or self.workers < 1
        ):
            raise ValueError("batch_size, shard_size and workers must be at least 1")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError(f"loader_workers must be 0 or more, got {self.loader_workers}")
