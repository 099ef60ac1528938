"""`POST /timeline`: an uploaded recording -> its emotion timeline as JSON.

A recording is much larger than a clip, so this route has its own, larger body limit
(:class:`TimelineLimits`, default 512 MB and 4 hours of audio). The upload is held in
memory only, never written to disk (issue 16): the form is parsed with a multipart parser
that never spools to a temporary file, and the timeline reads the recording from memory
(:class:`emofuse.timeline.reader.InMemoryRecording`) in blocks. Timelines take minutes of
CPU, so at most ``ServeLimits.max_timelines`` run at once (the app's
``state.timeline_slots``); the slot is taken BEFORE the body is read, so a waiting request
holds no upload and a busy server answers 503 without buffering one.

Multipart fields (each once; any other field is refused with 422): ``audio`` (the
recording: WAV, FLAC, OGG or MP3), ``transcript`` (optional SRT, VTT or CSV with times),
``channels`` (``mix`` or ``separate``), ``asr`` (``true``: words from the service's
recogniser, which a text model without a transcript needs), ``adapt`` (``whole``, the
default, or ``causal``: with a model that adapts to speakers, each channel is one speaker
normalised by the statistics of the whole recording or only of what came before each
segment, as ``emofuse timeline --adapt``). The answer is
:meth:`emofuse.timeline.Timeline.to_dict`: ``{"segments": [{"start_s", "end_s", "label",
"confidence", "p_<label>"..., "text" [, "channel"]}...], "summary": {...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from emofuse.serve.body_limit import set_path_body_limit
from emofuse.serve.handlers import TIMELINE_FIELDS, Slots, check_form_fields
from emofuse.serve.limits import MB, ServeLimits
from emofuse.serve.schemas import RequestProblem, error_responses
from emofuse.serve.uploads import not_a_file
from emofuse.timeline.adapt import ADAPT_CHOICES

ROUTE = "/timeline"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class TimelineLimits:
    """Bounds of `POST /timeline` (larger than `/predict`'s: a recording, not a clip)."""

    #: Largest upload in bytes (512 MB: over 4 h of 16 kHz 16-bit mono WAV).
    max_body_bytes: int = 512 * MB
    #: Longest accepted recording, in seconds.
    max_audio_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or not self.max_audio_s > 0:
            raise ValueError("TimelineLimits.max_body_bytes and max_audio_s must be positive")


class InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser, except that no part ever rolls over to a temporary file (the
    route's body limit bounds the memory); set on this class only, not process-wide."""

    spool_max_size = 2**62


_BINARY = {"type": "string", "format": "binary"}
_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["audio"],
                "properties": {
                    "audio": {**_BINARY, "description": "The recording (WAV, FLAC, OGG, MP3)."},
                    "transcript": {
                        **_BINARY,
                        "description": "Optional words with times: .srt, .vtt, .csv",
                    },
                    "channels": {
                        "type": "string",
                        "enum": ["mix", "separate"],
                        "default": "mix",
                        "description": "mix (default) or separate",
                    },
                    "asr": {
                        "type": "boolean",
                        "default": False,
                        "description": "words from the service's recogniser",
                    },
                    "adapt": {
                        "type": "string",
                        "enum": list(ADAPT_CHOICES),
                        "default": "whole",
                        "description": "a model that adapts to speakers: each channel's "
                        "statistics from the whole recording, or causal (only what came "
                        "before each segment)",
                    },
                },
            }
        }
    },
}


def include_timeline(app: FastAPI, limits: TimelineLimits | None = None) -> None:
    """Add `POST /timeline` to a service made by :func:`emofuse.serve.app.create_app`;
    called again (before the app serves), it only changes the limits."""
    limits = limits or TimelineLimits()
    set_path_body_limit(app, ROUTE, limits.max_body_bytes)
    first = not hasattr(app.state, "timeline_limits")
    app.state.timeline_limits = limits
    if not first:
        return

    @app.post(
        ROUTE,
        responses=error_responses(400, 413, 415, 422, 503),
        summary="The emotion timeline of a long recording (segments + summary)",
        description=(
            f"Uploads up to {limits.max_body_bytes / MB:g} MB and {limits.max_audio_s:g} s "
            'of audio (larger than /predict\'s limits). Returns {"segments": [...], '
            '"summary": {...}} as `emofuse timeline` writes them.'
        ),
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def timeline(request: Request) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        async with _timeline_slots(app).hold():  # before the body: a waiting upload is not held
            form = await _parse_form(request)
            try:
                job = await _job(app, form)
            finally:
                await form.close()
            return await run_in_threadpool(job.run)


def _timeline_slots(app: FastAPI) -> Any:
    slots = getattr(app.state, "timeline_slots", None)
    if slots is None:  # an app not made by create_app
        limits = getattr(app.state, "limits", None) or ServeLimits()
        slots = app.state.timeline_slots = Slots(
            limits, capacity=limits.max_timelines, what="timelines"
        )
    return slots


async def _parse_form(request: Request) -> FormData:
    """The multipart form, parts held in memory only."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise RequestProblem(
            422, "send the recording as multipart/form-data with an 'audio' file field"
        )
    parser = InMemoryMultiPartParser(
        request.headers, request.stream(), max_files=2, max_fields=len(TIMELINE_FIELDS) + 2
    )
    try:
        return await parser.parse()
    except MultiPartException as err:
        raise RequestProblem(400, f"malformed multipart body: {err.message}") from None


async def _job(app: FastAPI, form: FormData) -> _Job:
    """The checked fields of the form, the uploads read into memory."""
    from emofuse.timeline.reader import InMemoryRecording

    check_form_fields(ROUTE, [name for name, _ in form.multi_items()], TIMELINE_FIELDS)
    audio, transcript = form.get("audio"), form.get("transcript")
    if audio is None:
        raise RequestProblem(422, "field 'audio' is required: the recording, as a file part")
    if not isinstance(audio, UploadFile):  # a part without a file name arrives as text
        raise RequestProblem(422, not_a_file("audio", audio))
    if transcript is not None and not isinstance(transcript, UploadFile):
        raise RequestProblem(422, "field 'transcript' must be a file part (.srt, .vtt, .csv)")
    channels = _text_field(form, "channels", "mix")
    if channels not in ("mix", "separate"):
        raise RequestProblem(422, f"channels must be mix or separate, not {channels!r}")
    use_asr = _bool_field(form, "asr")
    adapt = _text_field(form, "adapt", "whole").strip().lower()
    if adapt not in ADAPT_CHOICES:
        raise RequestProblem(422, f"adapt must be {' or '.join(ADAPT_CHOICES)}, not {adapt!r}")
    name = Path(audio.filename or "upload").name or "upload"
    recording = InMemoryRecording(await audio.read(), name)
    await audio.close()  # frees the parser's copy now, not at the end of the request
    words = None
    if transcript is not None:
        words = _words(await transcript.read(), transcript.filename)
        await transcript.close()
    return _Job(app, recording, name, words, channels, use_asr, app.state.timeline_limits, adapt)


def _text_field(form: FormData, name: str, default: str) -> str:
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestProblem(422, f"field '{name}' must be a text field, not a file")
    return value


def _bool_field(form: FormData, name: str) -> bool:
    value = _text_field(form, name, "false").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise RequestProblem(422, f"field '{name}' must be true or false, not {value!r}")


def _words(data: bytes, filename: str | None) -> list[Any]:
    """The cues of an uploaded transcript, parsed in memory; messages call it
    ``transcript.<suffix>``."""
    from emofuse.timeline import TranscriptError
    from emofuse.timeline.transcript import parse_transcript

    where = "transcript" + Path(filename or ".srt").suffix.lower()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RequestProblem(400, f"{where}: not UTF-8 text ({err.reason})") from None
    try:
        return parse_transcript(text, where)
    except TranscriptError as err:
        raise RequestProblem(400, str(err)) from None


class _Job:
    """One timeline to compute (in a worker thread) from a recording in memory."""

    def __init__(self, app, recording, name, words, channels, use_asr, limits, adapt="whole"):
        self.app, self.recording, self.name = app, recording, name
        self.words, self.channels, self.use_asr, self.limits = words, channels, use_asr, limits
        self.adapt = adapt

    def run(self) -> dict[str, Any]:
        from emofuse.audio import AudioError
        from emofuse.serve.handlers import audio_error_status
        from emofuse.timeline import TimelineError, TranscriptError, build_timeline
        from emofuse.timeline.reader import recording_info
        from emofuse.timeline.run import TEXT_WAYS_OUT

        predictor, asr = self.app.state.predictor, getattr(self.app.state, "asr", None)
        try:
            info = recording_info(self.recording)
            if info.duration_s > self.limits.max_audio_s:
                raise RequestProblem(
                    413,
                    f"{self.name}: {info.duration_s:.0f} s of audio; this service takes "
                    f"recordings up to {self.limits.max_audio_s:g} s",
                )
            if self.use_asr and asr is None:
                raise RequestProblem(422, "asr=true but the service runs without --asr vosk")
            service = getattr(self.app.state, "service", None)  # the server's threshold
            timeline = build_timeline(
                predictor, self.recording, asr=asr if self.use_asr else None,
                transcript=self.words, channels=self.channels, progress=False, adapt=self.adapt,
                min_confidence=getattr(service, "min_confidence", None),
            )  # fmt: skip
        except AudioError as err:
            raise RequestProblem(audio_error_status(err), str(err)) from None
        except TimelineError as err:
            message = str(err).replace(
                TEXT_WAYS_OUT, "send a transcript file (.srt, .vtt, .csv) or asr=true"
            )
            raise RequestProblem(422, message) from None
        except TranscriptError as err:
            raise RequestProblem(400, str(err)) from None
        out = timeline.to_dict()
        out["summary"]["recording"]["path"] = self.name
        return out


__all__ = [
    "ROUTE",
    "TIMELINE_FIELDS",
    "InMemoryMultiPartParser",
    "TimelineLimits",
    "include_timeline",
]
