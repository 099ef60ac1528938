"""The bounds a running prediction service enforces on every request."""

from __future__ import annotations

from dataclasses import dataclass, field

from emofuse import audio_checks

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Request bounds; each one turns an abusive or mistaken request into a clear 4xx/503."""

    #: Largest request body in bytes (checked from Content-Length and while streaming).
    max_body_bytes: int = 25 * MB
    #: Longest accepted clip, in seconds of audio: the one length limit of every path
    #: (:data:`emofuse.audio_checks.MAX_CLIP_S`) unless set lower; longer recordings go
    #: to POST /timeline. A longer clip is refused (413) from its header, before decoding.
    max_audio_s: float = field(default_factory=lambda: audio_checks.MAX_CLIP_S)
    #: Most clips (or texts) in one `/predict/batch` request.
    max_batch_files: int = 16
    #: Predictions computed at the same time; further requests wait in line.
    max_in_flight: int = 2
    #: How long a request waits for a free slot before it gets 503 + Retry-After.
    queue_timeout_s: float = 30.0
    #: Seconds suggested to the client in the Retry-After header of a 503.
    retry_after_s: int = 5
    #: Longest accepted transcript, in characters.
    max_text_chars: int = 5000
    #: `POST /timeline` jobs at the same time (each takes minutes of CPU); more wait in
    #: line like predictions do (503 + Retry-After after the queue timeout).
    max_timelines: int = 1

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_batch_files",
            "max_in_flight",
            "max_text_chars",
            "max_timelines",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"ServeLimits.{name} must be at least 1, not {getattr(self, name)}"
                )
        for name in ("max_audio_s", "queue_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeLimits.{name} must be positive, not {getattr(self, name)}")
        if self.max_audio_s > audio_checks.MAX_CLIP_S:
            raise ValueError(
                f"ServeLimits.max_audio_s is {self.max_audio_s:g} s, above the clip limit of "
                f"every path ({audio_checks.MAX_CLIP_S:g} s, emofuse.audio_checks.MAX_CLIP_S); "
                "it may only be lowered (long recordings: POST /timeline, `emofuse timeline`)"
            )
        if self.retry_after_s < 0:
            raise ValueError(f"ServeLimits.retry_after_s must be >= 0, not {self.retry_after_s}")
