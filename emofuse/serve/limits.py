"""The bounds a running prediction service enforces on every request."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Request bounds; each one turns an abusive or mistaken request into a clear 4xx/503."""

    #: Largest request body in bytes (checked from Content-Length and while streaming).
    max_body_bytes: int = 25 * MB
    #: Longest accepted clip, in seconds of audio.
    max_audio_s: float = 60.0
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

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch_files", "max_in_flight", "max_text_chars"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"ServeLimits.{name} must be at least 1, not {getattr(self, name)}"
                )
        for name in ("max_audio_s", "queue_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeLimits.{name} must be positive, not {getattr(self, name)}")
        if self.retry_after_s < 0:
            raise ValueError(f"ServeLimits.retry_after_s must be >= 0, not {self.retry_after_s}")
