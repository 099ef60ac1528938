"""What the service answers: the JSON shapes of its responses (documented in OpenAPI) and
the one error shape, ``{"detail": "..."}``, raised as :class:`RequestProblem`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException


class ModelInfo(BaseModel):
    modality: str = Field(description='"speech", "text" or "both"')


class PredictionOut(BaseModel):
    label: str = Field(description="The most probable emotion.")
    probabilities: dict[str, float] = Field(description="Probability of every label.")
    text: str | None = Field(description="The transcript the model used (sent or from ASR).")
    model: ModelInfo
    warnings: list[str] = Field(
        default_factory=list, description="Things the caller should know, e.g. empty ASR."
    )
    by_modality: dict[str, dict[str, float]] | None = Field(
        None,
        description='"both" models: the probabilities of the speech-only and the text-only '
        "heads (trained on the same clips), keyed by modality.",
    )
    agree: bool | None = Field(
        None, description="Whether the speech-only and text-only heads name the same label."
    )
    uncertain: bool = Field(
        False,
        description='Whether the top probability (the fused one for a "both" model) is '
        "below min_confidence; `label` is still the most probable label.",
    )
    min_confidence: float | None = Field(
        None,
        description="The threshold used: the request's min_confidence, else the server's "
        "--min-confidence; null when none (nothing is marked uncertain).",
    )
    speaker_clips: int | None = Field(
        None,
        description="With a `speaker` session and a model that adapts to speakers: how many "
        "clips of the session (this one included) the statistics the clip was normalised "
        "by came from; few clips mean weak adaptation. null when not adapted.",
    )


class BatchItemOut(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    filename: str | None = None
    status: int = Field(description="200, or the 4xx this item alone would have got.")
    result: PredictionOut | None = None
    detail: str | None = Field(None, description="What was wrong with this item.")


class SpeakerForgottenOut(BaseModel):
    forgotten: bool = Field(description="Always true: the session's statistics are gone.")


class ErrorOut(BaseModel):
    detail: str


class HealthOut(BaseModel):
    status: str
    modality: str
    labels: list[str]
    needs_text: bool
    needs_audio: bool
    asr: bool
    in_flight: int
    max_in_flight: int
    max_audio_s: float
    max_body_bytes: int
    max_batch_files: int
    adapts_to_speakers: bool = Field(
        False, description="Whether the model normalises clips by a speaker session's statistics."
    )
    speaker_sessions: int = Field(0, description="Speaker sessions held in memory now.")
    max_speaker_sessions: int = Field(
        0, description="Most sessions held; the least recently used is forgotten beyond."
    )


class LabelsOut(BaseModel):
    labels: list[str]
    modality: str
    #: ``#rrggbb`` per label: the colours of the PNGs (emofuse.palette), drawn by the page
    colours: dict[str, str]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a route that can answer these statuses."""
    return {code: {"model": ErrorOut} for code in codes}


class RequestProblem(HTTPException):
    """A 4xx/503 with a one-line detail; raised anywhere in request handling."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
