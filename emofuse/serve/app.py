"""The HTTP prediction service: routes only. The request logic is
:mod:`emofuse.serve.handlers`, the response shapes :mod:`emofuse.serve.schemas`, the body
limit :mod:`emofuse.serve.body_limit`.

`create_app(predictor, limits=ServeLimits())` takes anything shaped like a
:class:`~emofuse.bundle.Bundle` (see :class:`Predictor`), so the app never loads files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

from emofuse.asr import Transcriber
from emofuse.serve.body_limit import BodyLimitMiddleware
from emofuse.serve.errors import app_version, install_error_handlers
from emofuse.serve.handlers import (
    BATCH_FIELDS,
    PREDICT_FIELDS,
    PredictionService,
    Predictor,
    Slots,
    batch_texts,
    check_form_fields,
    warm_up,
)
from emofuse.serve.limits import ServeLimits
from emofuse.serve.redact import PathRedactor, ServerPathsMiddleware, server_folders
from emofuse.serve.schemas import (
    BatchItemOut,
    HealthOut,
    LabelsOut,
    PredictionOut,
    RequestProblem,
    SpeakerForgottenOut,
    error_responses,
)
from emofuse.serve.speakers import SpeakerSessions, request_speaker

log = logging.getLogger("emofuse.serve")
STATIC_DIR = Path(__file__).with_name("static")
#: The optional threshold field of /predict and /predict/batch (422 outside [0, 1]).
MinConfidence = Annotated[
    float | None,
    Form(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Mark the prediction uncertain when its top probability is below this "
        "(0 to 1; 0: never). Default: the server's --min-confidence.",
    ),
]
#: The optional speaker session field of /predict and /predict/batch.
SpeakerField = Annotated[
    str | None,
    Form(
        max_length=200,
        description="A speaker session id of your choosing (a caller, a channel). A model "
        "that adapts to speakers adds the clip(s) to the session's running statistics, in "
        "memory only, then normalises them by those statistics (the first clip of a "
        "session: one clip, held close to the training set's); `speaker_clips` in the "
        "answer says how many clips that was. Sessions are forgotten after an idle time, "
        "when too many are held (least recently used first), or with DELETE "
        "/speakers/{id}. Ignored (with a warning) by a model that does not adapt.",
    ),
]

__all__ = ["Predictor", "create_app", "warm_up"]


def create_app(
    predictor: Predictor,
    *,
    limits: ServeLimits | None = None,
    asr: Transcriber | None = None,
    warm: bool = True,
    decode: Callable[..., np.ndarray] | None = None,
    security: Any = None,
    min_confidence: float | None = None,
    speaker_sessions: SpeakerSessions | None = None,
) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``decode(data, sample_rate_hz, name=..., max_duration_s=...)`` turns uploaded bytes
    into a float32 waveform (default :func:`emofuse.audio.load_waveform`, refusing clips
    over the limit) and raises an :class:`~emofuse.audio.AudioError` naming the problem.
    ``security`` (an :class:`emofuse.serve.security.SecuritySettings`) wraps the app in
    the security middleware when given. ``min_confidence`` (in [0, 1]; None: off) is the
    default threshold below which a prediction is marked ``uncertain``; a request to
    /predict or /predict/batch may send its own. ``speaker_sessions``: where the running
    statistics of the requests' ``speaker`` sessions are kept (default: a
    :class:`~emofuse.serve.speakers.SpeakerSessions` with its default bounds).
    """
    limits = limits or ServeLimits()
    service = PredictionService(
        predictor, limits, asr=asr, decode=decode, min_confidence=min_confidence,
        speakers=speaker_sessions,
    )  # fmt: skip
    if warm:
        warm_up(predictor, asr)
    slots = Slots(limits)
    # One timeline at a time by default (each takes minutes of CPU): ServeLimits.max_timelines.
    timeline_slots = Slots(limits, capacity=limits.max_timelines, what="timelines")

    app = FastAPI(
        title="emofuse prediction service",
        version=app_version(),
        description=(
            f"Emotion recognition from speech and/or text. Model modality: {service.modality}; "
            f"labels: {', '.join(service.labels)}. Limits: body {limits.max_body_bytes} bytes, "
            f"clips up to {limits.max_audio_s:g} s (longer recordings: POST /timeline), "
            f"batches up to {limits.max_batch_files}. A form field sent twice where one is "
            "read, or a field a route does not read, is refused with 422. A prediction whose "
            "top probability is below `min_confidence` (the request's, else the server's: "
            f"{_threshold_text(service.min_confidence)}) has `uncertain: true`. A `speaker` "
            "field names a session whose running statistics (in memory only, bounded, "
            "expiring) a model that adapts to speakers normalises clips by; "
            "DELETE /speakers/{id} forgets one."
        ),
        docs_url=None,  # served below from files shipped in a wheel: no CDN, works offline
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=limits.max_body_bytes)
    # No server path in any answer: the model's folder and the server's own are replaced.
    app.add_middleware(ServerPathsMiddleware, redactor=PathRedactor(server_folders(predictor)))
    app.state.predictor, app.state.limits, app.state.asr = predictor, limits, asr
    app.state.service = service
    app.state.slots, app.state.timeline_slots = slots, timeline_slots

    install_error_handlers(app, log)

    @app.post(
        "/predict",
        response_model=PredictionOut,
        responses=error_responses(400, 413, 415, 422, 503),
        summary="Predict the emotion of one clip (and/or its transcript)",
    )
    async def predict(
        request: Request,
        audio: Annotated[
            UploadFile | None,
            File(description="The clip (WAV, FLAC, OGG, ...). Optional for text-only models."),
        ] = None,
        text: Annotated[
            str | None,
            Form(description="The transcript. Without it, a model that reads text needs --asr."),
        ] = None,
        min_confidence: MinConfidence = None,
        speaker: SpeakerField = None,
    ) -> PredictionOut:
        names = await _field_names(request)
        check_form_fields("/predict", names, PREDICT_FIELDS)
        speaker = request_speaker(speaker)
        text = "" if text is None and "text" in names else text  # sent empty: said blank
        item = service.item(0, *await _read(audio, sent="audio" in names), text)
        if item.status != 200:
            raise RequestProblem(item.status, item.detail or "bad request")
        (result,) = await slots.run(service.predict_items, [item], min_confidence, speaker)
        if result is None:
            raise RequestProblem(item.status, item.detail or "bad request")
        return result

    @app.post(
        "/predict/batch",
        response_model=list[BatchItemOut],
        responses=error_responses(400, 413, 422, 503),
        summary="Predict several clips; a bad item gets its own error, not the batch's",
    )
    async def predict_batch(
        request: Request,
        audio: Annotated[
            list[UploadFile] | None, File(description="The clips, one `audio` part each.")
        ] = None,
        texts: Annotated[
            list[str] | None,
            Form(description="Transcripts in clip order, one `texts` part each ('' = none)."),
        ] = None,
        texts_json: Annotated[
            str | None,
            Form(
                description='Transcripts as one JSON list, e.g. ["...", null] (instead of texts).'
            ),
        ] = None,
        min_confidence: MinConfidence = None,
        speaker: SpeakerField = None,
    ) -> list[BatchItemOut]:
        check_form_fields("/predict/batch", await _field_names(request), BATCH_FIELDS)
        speaker = request_speaker(speaker)
        text_list = batch_texts(texts, texts_json)
        service.check_batch(len(audio or []), len(text_list))  # before reading any upload
        uploads = [await _read(upload) for upload in audio or []]
        items = service.batch_items(uploads, text_list)
        results = await slots.run(service.predict_items, items, min_confidence, speaker)
        return [
            BatchItemOut(
                index=item.index,
                filename=item.filename,
                status=item.status,
                result=result,
                detail=item.detail,
            )
            for item, result in zip(items, results, strict=True)
        ]

    @app.delete(
        "/speakers/{speaker_id}",
        response_model=SpeakerForgottenOut,
        responses=error_responses(404),
        summary="Forget a speaker session's running statistics",
    )
    async def forget_speaker(speaker_id: str) -> SpeakerForgottenOut:
        """Drop the session's statistics from memory now (they are never on disk). 404 when
        the server holds none under this id: never used, expired, evicted or forgotten."""
        if not service.speakers.forget(speaker_id):
            raise RequestProblem(
                404,
                "no such speaker session (never used, expired, evicted or already forgotten)",
            )
        return SpeakerForgottenOut(forgotten=True)

    @app.get("/health", response_model=HealthOut, summary="Liveness and model summary")
    async def health() -> HealthOut:
        return service.health(slots.in_flight)

    @app.get("/labels", response_model=LabelsOut, summary="The labels the model predicts")
    async def get_labels() -> LabelsOut:
        from emofuse.palette import label_colours

        return LabelsOut(
            labels=service.labels, modality=service.modality, colours=label_colours(service.labels)
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_offline_docs(app)
    from emofuse.serve.timeline_route import include_timeline  # POST /timeline (larger limit)

    include_timeline(app)
    if security is not None:  # never serve without the asked-for protection: fail loudly
        from emofuse.serve.security import install_security

        install_security(app, security)
    return app


def _threshold_text(min_confidence: float | None) -> str:
    return "none" if min_confidence is None else f"{min_confidence:g}"


async def _field_names(request: Request) -> list[str]:
    """Every field name of the request's form, once per part (the form is already parsed)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return []
    return [name for name, _ in (await request.form()).multi_items()]


async def _read(upload: UploadFile | None, sent: bool = False) -> tuple[str | None, bytes | None]:
    if upload is None:  # ``sent``: an empty file part (no file chosen), an empty upload
        return ("upload", b"") if sent else (None, None)
    return upload.filename or "upload", await upload.read()


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the `swagger-ui-bundle` wheel, so the API docs render on
    machines with no internet (FastAPI's default loads them from a CDN). Its start-up code
    is static/docs.js: no inline script (the CSP forbids it), and it sends the API token."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")
