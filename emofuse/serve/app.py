"""The HTTP prediction service: one model loaded at start-up, bounded work in flight,
and a clear JSON 4xx for every bad request (a 500 only for a real bug, always logged).

`create_app(predictor, limits=ServeLimits())` takes anything shaped like a
:class:`~emofuse.bundle.Bundle` (see :class:`Predictor`), so the app never loads files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emofuse.serve.limits import ServeLimits

log = logging.getLogger("emofuse.serve")

#: Uploads are decoded (mixed down, resampled) to this rate; the predictor resamples further
#: if its encoders want another one, and the Vosk recogniser wants exactly this.
SAMPLE_RATE_HZ = 16_000
STATIC_DIR = Path(__file__).with_name("static")

AudioItem = tuple[np.ndarray, int]


class PredictionLike(Protocol):
    label: str
    probabilities: Mapping[str, float]
    text: str | None


class Predictor(Protocol):
    """What the service needs from a model; :class:`emofuse.bundle.Bundle` is one."""

    labels: list[str]
    modality: str  # "speech" | "text" | "both"
    needs_text: bool
    needs_audio: bool

    def predict(
        self,
        audio: Sequence[Any],
        texts: Sequence[str | None] | None = None,
        *,
        asr: Any = None,
    ) -> list[PredictionLike]: ...


class Transcriber(Protocol):
    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> str: ...


# ---------------------------------------------------------------- response shapes


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


class BatchItemOut(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    filename: str | None = None
    status: int = Field(description="200, or the 4xx this item alone would have got.")
    result: PredictionOut | None = None
    detail: str | None = Field(None, description="What was wrong with this item.")


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


class LabelsOut(BaseModel):
    labels: list[str]
    modality: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


# ---------------------------------------------------------------- errors


class RequestProblem(HTTPException):
    """A 4xx/503 with a one-line detail; raised anywhere in request handling."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)


class BodyTooLarge(RequestProblem):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"request body larger than the server's limit of {limit} bytes "
            f"({limit / 1024 / 1024:.1f} MB); send a shorter clip or fewer files",
            headers={"Connection": "close"},
        )


def _audio_error_status(err: Exception) -> int:
    """415 for formats we cannot read, 413 for clips over the length limit, else 422."""
    kind = str(getattr(err, "kind", "") or "").lower()
    message = str(err).lower()
    if kind in {"unsupported", "unsupported-format", "format"} or "unsupported" in message:
        return 415
    if kind in {"too-long", "too_long"} or "too long" in message or "longer than" in message:
        return 413
    return 422


class BodyLimitMiddleware:
    """Refuse bodies over ``max_body_bytes``: at once from Content-Length, and while
    streaming (chunked uploads), so a 1 GB body is never read into memory."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, f"invalid Content-Length header {declared!r}")
                return
            if size > self.max_body_bytes:
                problem = BodyTooLarge(self.max_body_bytes)
                await _send_json(send, 413, problem.detail, problem.headers)
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as problem:  # raised outside FastAPI's own handlers
            if started:
                raise
            await _send_json(send, 413, problem.detail, problem.headers)


async def _send_json(
    send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _validation_detail(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "request"
        parts.append(f"field '{where}': {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# ---------------------------------------------------------------- work in flight


class _Slots:
    """At most ``n`` predictions at once; a request that waits longer than the queue
    timeout gets 503 + Retry-After. The semaphore is made per event loop (test clients
    and servers may each run their own loop)."""

    def __init__(self, limits: ServeLimits):
        self.limits = limits
        self.in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.limits.max_in_flight)
        return self._semaphore

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        semaphore = self._get()
        try:
            async with asyncio.timeout(self.limits.queue_timeout_s):
                await semaphore.acquire()
        except TimeoutError:
            raise RequestProblem(
                503,
                f"server busy: {self.limits.max_in_flight} predictions already running and "
                f"no slot freed within {self.limits.queue_timeout_s:g} s; retry later",
                headers={"Retry-After": str(self.limits.retry_after_s)},
            ) from None
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            semaphore.release()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self.hold():
            return await run_in_threadpool(fn, *args)


# ---------------------------------------------------------------- the app


@dataclass
class _Item:
    """One clip and/or text of a request, and its problem if it has one."""

    index: int
    filename: str | None
    data: bytes | None
    text: str | None
    audio: AudioItem | None = None
    status: int = 200
    detail: str | None = None


def _clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _dummy_clip(seconds: float = 1.0) -> AudioItem:
    t = np.arange(int(SAMPLE_RATE_HZ * seconds), dtype=np.float32) / SAMPLE_RATE_HZ
    rng = np.random.default_rng(0)
    wave = 0.1 * np.sin(2 * np.pi * 220.0 * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32), SAMPLE_RATE_HZ


def warm_up(predictor: Predictor, asr: Transcriber | None = None) -> None:
    """One dummy prediction, so encoders are loaded and the first request is not slow."""
    clip = _dummy_clip()
    if asr is not None:
        asr.transcribe(*clip)
    texts = ["warm-up"] if predictor.needs_text else None
    audio = [clip] if predictor.needs_audio else [None]
    predictor.predict(audio, texts)


def create_app(
    predictor: Predictor,
    *,
    limits: ServeLimits | None = None,
    asr: Transcriber | None = None,
    warm: bool = True,
    decode: Callable[..., np.ndarray] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``decode(data, sample_rate_hz, name=..., max_duration_s=...)`` turns uploaded bytes
    into a float32 waveform (default :func:`emofuse.audio.decode_audio_bytes`, refusing
    clips over the limit) and raises a ``ValueError`` (``AudioError``) naming the problem.
    """
    limits = limits or ServeLimits()
    if decode is None:
        from emofuse.audio import decode_audio_bytes

        # A clip over the limit is refused (413), not silently cropped.
        decode = functools.partial(decode_audio_bytes, long_policy="error")
    labels = list(predictor.labels)
    modality = str(predictor.modality)
    needs_text, needs_audio = bool(predictor.needs_text), bool(predictor.needs_audio)
    if warm:
        warm_up(predictor, asr)
    slots = _Slots(limits)

    app = FastAPI(
        title="emofuse prediction service",
        version=_version(),
        description=(
            f"Emotion recognition from speech and/or text. Model modality: {modality}; "
            f"labels: {', '.join(labels)}. Limits: body {limits.max_body_bytes} bytes, "
            f"clips up to {limits.max_audio_s:g} s, batches up to {limits.max_batch_files}."
        ),
        docs_url=None,  # served below from files shipped in a wheel: no CDN, works offline
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=limits.max_body_bytes)
    app.state.predictor, app.state.limits, app.state.asr = predictor, limits, asr

    @app.exception_handler(HTTPException)
    async def _http_problem(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see server log"}, 500
        )

    def model_out(prediction: PredictionLike) -> PredictionOut:
        return PredictionOut(
            label=prediction.label,
            probabilities={k: float(v) for k, v in prediction.probabilities.items()},
            text=getattr(prediction, "text", None),
            model=ModelInfo(modality=modality),
            warnings=list(getattr(prediction, "extra", {}).get("warnings", [])),
        )

    def missing_text_detail() -> str:
        return (
            f"this model (modality {modality}) needs a transcript: send a 'text' form field "
            "with the clip, or start the server with --asr vosk to transcribe the audio"
        )

    def check_item(item: _Item) -> None:
        """Mark the item 422 for what can be judged before decoding."""
        detail = None
        if item.text is not None and len(item.text) > limits.max_text_chars:
            detail = f"text of {len(item.text)} characters; the limit is {limits.max_text_chars}"
        elif item.data is None and needs_audio:
            detail = f"field 'audio' is required: this model (modality {modality}) needs a clip"
        elif item.data is None and item.text is None:
            detail = "send a 'text' form field (this model reads text) or an 'audio' file " + (
                "to transcribe" if asr is not None else "with --asr vosk on the server"
            )
        elif item.text is None and needs_text and asr is None:
            detail = missing_text_detail()
        elif item.data is not None and len(item.data) == 0 and (needs_audio or not item.text):
            detail = f"{item.filename}: empty upload (0 bytes)"
        if detail is not None:
            item.status, item.detail = 422, detail

    def decode_item(item: _Item) -> None:
        """Decode the item's clip if the model (or ASR) will use it; record bad audio."""
        if item.status != 200 or item.data is None:
            return
        if not needs_audio and item.text is not None:
            return  # a text model with its text: the clip is not needed
        try:
            wave = decode(
                item.data,
                SAMPLE_RATE_HZ,
                name=item.filename or "upload",
                max_duration_s=limits.max_audio_s,
            )
        except ValueError as err:  # AudioError
            item.status, item.detail = _audio_error_status(err), str(err)
            return
        item.audio = (np.asarray(wave, dtype=np.float32), SAMPLE_RATE_HZ)

    def predict_items(items: list[_Item]) -> list[PredictionOut | None]:
        """Decode and predict the good items (in a worker thread, inside a slot)."""
        for item in items:
            decode_item(item)
        good = [item for item in items if item.status == 200]
        results: dict[int, PredictionOut] = {}
        if good:
            try:
                results = dict(zip([i.index for i in good], _predict(good), strict=True))
            except ValueError as err:  # e.g. a transcript the model cannot use
                if len(good) == 1:
                    good[0].status, good[0].detail = 422, str(err)
                else:  # isolate the item that failed
                    for item in good:
                        try:
                            results[item.index] = _predict([item])[0]
                        except ValueError as item_err:
                            item.status, item.detail = 422, str(item_err)
        return [results.get(item.index) for item in items]

    def _predict(items: list[_Item]) -> list[PredictionOut]:
        audio = [item.audio for item in items]
        texts = [item.text for item in items]
        use_texts = texts if any(t is not None for t in texts) else None
        predictions = predictor.predict(audio, use_texts, asr=asr)
        return [model_out(p) for p in predictions]

    async def read_upload(upload: UploadFile | None) -> tuple[str | None, bytes | None]:
        if upload is None:
            return None, None
        return upload.filename or "upload", await upload.read()

    @app.post(
        "/predict",
        response_model=PredictionOut,
        responses=_errors(400, 413, 415, 422, 503),
        summary="Predict the emotion of one clip (and/or its transcript)",
    )
    async def predict(
        audio: Annotated[
            UploadFile | None,
            File(description="The clip (WAV, FLAC, OGG, ...). Optional for text-only models."),
        ] = None,
        text: Annotated[
            str | None,
            Form(description="The transcript. Without it, a model that reads text needs --asr."),
        ] = None,
    ) -> PredictionOut:
        filename, data = await read_upload(audio)
        item = _Item(0, filename, data, _clean_text(text))
        check_item(item)
        if item.status != 200:
            raise RequestProblem(item.status, item.detail or "bad request")
        (result,) = await slots.run(predict_items, [item])
        if result is None:
            raise RequestProblem(item.status, item.detail or "bad request")
        return result

    @app.post(
        "/predict/batch",
        response_model=list[BatchItemOut],
        responses=_errors(400, 413, 422, 503),
        summary="Predict several clips; a bad item gets its own error, not the batch's",
    )
    async def predict_batch(
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
    ) -> list[BatchItemOut]:
        uploads = list(audio or [])
        text_list = _batch_texts(texts, texts_json)
        n = max(len(uploads), len(text_list))
        if n == 0:
            raise RequestProblem(422, "send at least one 'audio' file or one text")
        if n > limits.max_batch_files:
            raise RequestProblem(
                413, f"{n} items in one batch; the limit is {limits.max_batch_files}"
            )
        if uploads and text_list and len(uploads) != len(text_list):
            raise RequestProblem(
                422, f"got {len(uploads)} audio files but {len(text_list)} texts; send one each"
            )
        items = []
        for i in range(n):
            filename, data = await read_upload(uploads[i] if uploads else None)
            text = _clean_text(text_list[i]) if text_list else None
            item = _Item(i, filename, data, text)
            check_item(item)
            items.append(item)
        results = await slots.run(predict_items, items)
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

    @app.get("/health", response_model=HealthOut, summary="Liveness and model summary")
    async def health() -> HealthOut:
        return HealthOut(
            status="ok",
            modality=modality,
            labels=labels,
            needs_text=needs_text,
            needs_audio=needs_audio,
            asr=asr is not None,
            in_flight=slots.in_flight,
            max_in_flight=limits.max_in_flight,
            max_audio_s=limits.max_audio_s,
            max_body_bytes=limits.max_body_bytes,
            max_batch_files=limits.max_batch_files,
        )

    @app.get("/labels", response_model=LabelsOut, summary="The labels the model predicts")
    async def get_labels() -> LabelsOut:
        return LabelsOut(labels=labels, modality=modality)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_offline_docs(app)
    return app


def _add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the `swagger-ui-bundle` wheel, so the API docs render on
    machines with no internet (FastAPI's default loads them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )


def _batch_texts(texts: list[str] | None, texts_json: str | None) -> list[str | None]:
    if texts_json is not None and texts:
        raise RequestProblem(422, "send either 'texts' parts or one 'texts_json' field, not both")
    if texts_json is None:
        return list(texts or [])
    try:
        parsed = json.loads(texts_json)
    except json.JSONDecodeError as err:
        raise RequestProblem(422, f"field 'texts_json' is not valid JSON: {err}") from None
    if not isinstance(parsed, list) or not all(t is None or isinstance(t, str) for t in parsed):
        raise RequestProblem(422, "field 'texts_json' must be a JSON list of strings or nulls")
    return parsed


def _version() -> str:
    from emofuse import __version__

    return __version__
