"""What the service does with a request, without HTTP: check each item, decode its clip
with the one waveform loader (:func:`emofuse.audio.load_waveform`), score the good items
through the model's ``predict`` (for a bundle, :class:`emofuse.predict.PredictionEngine`;
a bad item fails alone, :func:`emofuse.isolation.isolate_failures`), answer each prediction
with its fields (:func:`emofuse.predict.rows.prediction_fields`, the row builder of every
caller), and give every bad item the status its error class calls for.

A request may name a ``speaker`` session: a bundle that adapts to speakers then scores
its clips with that session's running statistics (:mod:`emofuse.serve.speakers`).

:class:`PredictionService` is plain Python: tests call it with bytes and strings.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from emofuse.asr import Transcriber
from emofuse.audio import (
    AudioError,
    AudioTooLong,
    AudioUnsupportedFormat,
    load_waveform,
)
from emofuse.head.confidence import check_min_confidence
from emofuse.isolation import isolate_failures
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ, SPEECH
from emofuse.predict.rows import PredictionLike, prediction_fields
from emofuse.serve.limits import ServeLimits
from emofuse.serve.schemas import HealthOut, ModelInfo, PredictionOut, RequestProblem
from emofuse.serve.speakers import SPEAKER_NOT_USED, SpeakerSessions, request_speaker
from emofuse.text import clean_text

#: The rate of the warm-up clip, and of uploads for a model without a speech encoder;
#: uploads are otherwise decoded once, straight to the speech encoder's rate
#: (:func:`decode_rate_hz`); the Vosk recogniser resamples to its own rate itself.
SAMPLE_RATE_HZ = DEFAULT_SAMPLE_RATE_HZ


def decode_rate_hz(predictor: Any) -> int:
    """The rate uploads are decoded to: the bundle's speech encoder's, so the engine
    never resamples a second time; :data:`SAMPLE_RATE_HZ` for a model without one."""
    encoder = getattr(predictor, "encoder", None)
    if not getattr(predictor, "needs_audio", False) or not callable(encoder):
        return SAMPLE_RATE_HZ
    try:
        rate = getattr(encoder(SPEECH), "sample_rate_hz", None)
    except (KeyError, ValueError, LookupError):
        return SAMPLE_RATE_HZ
    return int(rate) if rate else SAMPLE_RATE_HZ


#: HTTP status of each kind of bad audio (the most specific class listed wins); any
#: other :class:`~emofuse.audio.AudioError` (corrupt, empty, too short, NaN) is a 422.
AUDIO_ERROR_STATUS: dict[type[AudioError], int] = {
    AudioUnsupportedFormat: 415,
    AudioTooLong: 413,
}


class Predictor(Protocol):
    """What the service needs from a model; :class:`emofuse.bundle.Bundle` is one. One
    with a ``speaker_norm`` is also passed ``speaker=`` and ``running_stats=``."""

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


def audio_error_status(err: AudioError) -> int:
    """The HTTP status for a bad clip, from its class alone."""
    for kind in type(err).__mro__:
        if kind in AUDIO_ERROR_STATUS:
            return AUDIO_ERROR_STATUS[kind]
    return 422


@dataclass
class Item:
    """One clip and/or text of a request, and its problem if it has one."""

    index: int
    filename: str | None
    data: bytes | None
    text: str | None
    audio: tuple[np.ndarray, int] | None = None
    status: int = 200
    detail: str | None = None
    #: what the loader noticed about the clip (truncated, narrowband): warnings of the answer
    notes: list[str] = field(default_factory=list)


def request_text(text: str | None) -> str | None:
    """A sent transcript as the encoder will see it (:func:`emofuse.text.clean_text`);
    None when nothing but white space was sent."""
    cleaned = clean_text(text) if text is not None else ""
    return cleaned or None


#: The form fields each prediction route reads, and those it takes once at most.
PREDICT_FIELDS = ("audio", "text", "min_confidence", "speaker")
BATCH_FIELDS = ("audio", "texts", "texts_json", "min_confidence", "speaker")
TIMELINE_FIELDS = ("audio", "transcript", "channels", "asr", "adapt")
_ONCE = {
    "/predict": PREDICT_FIELDS,
    "/predict/batch": ("texts_json", "min_confidence", "speaker"),
    "/timeline": TIMELINE_FIELDS,
}
_ONCE_HINT = {
    ("/predict", "audio"): "; send several clips to /predict/batch",
    ("/predict", "text"): "; one transcript per clip",
    ("/timeline", "audio"): "; one recording per request",
    ("/predict/batch", "speaker"): "; one session for the clips of a batch",
}


def check_form_fields(route: str, names: Sequence[str], allowed: Sequence[str]) -> None:
    """Refuse (422) a form with a field the route does not read, or with one it reads
    once sent several times: neither is ever silently dropped."""
    counts = Counter(names)
    unknown = sorted(set(counts) - set(allowed))
    if unknown:
        raise RequestProblem(
            422,
            f"unexpected field {', '.join(repr(n) for n in unknown)}: {route} reads "
            + ", ".join(repr(n) for n in allowed),
        )
    for name in _ONCE.get(route, ()):
        if counts[name] > 1:
            raise RequestProblem(
                422,
                f"field '{name}' sent {counts[name]} times; {route} takes one"
                + _ONCE_HINT.get((route, name), ""),
            )


def batch_texts(texts: list[str] | None, texts_json: str | None) -> list[str | None]:
    """The transcripts of a batch, from ``texts`` parts or one ``texts_json`` list."""
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


def _dummy_clip(seconds: float = 1.0) -> tuple[np.ndarray, int]:
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


class PredictionService:
    """The request logic of the service for one model: checks, decoding, prediction.

    ``min_confidence`` is the server's default threshold (a request may send its own):
    a prediction whose top probability is below it is marked ``uncertain`` by
    :func:`emofuse.head.confidence.is_uncertain`, the rule of every other caller."""

    def __init__(
        self,
        predictor: Predictor,
        limits: ServeLimits,
        *,
        asr: Transcriber | None = None,
        decode: Callable[..., np.ndarray] | None = None,
        min_confidence: float | None = None,
        speakers: SpeakerSessions | None = None,
    ):
        self.predictor = predictor
        #: running statistics of the speaker sessions (in memory only)
        self.speakers = speakers if speakers is not None else SpeakerSessions()
        self.adapts = getattr(predictor, "speaker_norm", None) is not None
        self.min_confidence = check_min_confidence(min_confidence)
        self.limits = limits
        self.asr = asr
        # A clip over the limit is refused (413), not silently cropped.
        self.decode = decode or functools.partial(load_waveform, long_policy="error")
        self.decode_notes = "notes" in inspect.signature(self.decode).parameters
        self.labels = list(predictor.labels)
        self.modality = str(predictor.modality)
        self.needs_text = bool(predictor.needs_text)
        self.needs_audio = bool(predictor.needs_audio)
        self.sample_rate_hz = decode_rate_hz(predictor)

    # -- items
    def item(self, index: int, filename: str | None, data: bytes | None, text: str | None) -> Item:
        """An item, marked 422 for what can be judged before decoding."""
        item = Item(index, filename, data, request_text(text))
        detail = None
        if item.text is not None and len(item.text) > self.limits.max_text_chars:
            detail = (
                f"text of {len(item.text)} characters; the limit is {self.limits.max_text_chars}"
            )
        elif item.data is None and self.needs_audio:
            detail = (
                f"field 'audio' is required: this model (modality {self.modality}) needs a clip"
            )
        elif item.data is None and item.text is None:
            detail = "send a 'text' form field (this model reads text) or an 'audio' file " + (
                "to transcribe" if self.asr is not None else "with --asr vosk on the server"
            )
        elif item.text is None and self.needs_text and self.asr is None:
            detail = self.missing_text_detail()
        elif item.data is not None and len(item.data) == 0 and (self.needs_audio or not item.text):
            detail = f"{item.filename}: empty upload (0 bytes)"
        if detail is not None and text is not None and item.text is None:  # sent, but blank
            detail = "the text sent is blank (empty or white space only): " + detail
        if detail is not None:
            item.status, item.detail = 422, detail
        return item

    def missing_text_detail(self) -> str:
        return (
            f"this model (modality {self.modality}) needs a transcript: send a 'text' form "
            "field with the clip, or start the server with --asr vosk to transcribe the audio"
        )

    def check_batch(self, n_uploads: int, n_texts: int) -> int:
        """The number of items of a batch, or the problem that refuses the whole batch."""
        n = max(n_uploads, n_texts)
        if n == 0:
            raise RequestProblem(422, "send at least one 'audio' file or one text")
        if n > self.limits.max_batch_files:
            raise RequestProblem(
                413, f"{n} items in one batch; the limit is {self.limits.max_batch_files}"
            )
        if n_uploads and n_texts and n_uploads != n_texts:
            raise RequestProblem(
                422, f"got {n_uploads} audio files but {n_texts} texts; send one each"
            )
        return n

    def batch_items(
        self,
        uploads: Sequence[tuple[str | None, bytes | None]],
        texts: Sequence[str | None],
    ) -> list[Item]:
        """The items of a batch request (``uploads`` as (filename, bytes) pairs)."""
        n = self.check_batch(len(uploads), len(texts))
        return [
            self.item(
                i,
                *(uploads[i] if uploads else (None, None)),
                texts[i] if texts else None,
            )
            for i in range(n)
        ]

    # -- the work (runs in a worker thread)
    def decode_item(self, item: Item) -> None:
        """Decode the item's clip if the model (or ASR) will use it; record bad audio."""
        if item.status != 200 or item.data is None:
            return
        if not self.needs_audio and item.text is not None:
            return  # a text model with its text: the clip is not needed
        try:
            notes = {"notes": item.notes} if self.decode_notes else {}
            wave = self.decode(
                item.data,
                self.sample_rate_hz,
                name=item.filename or "upload",
                max_duration_s=self.limits.max_audio_s,
                **notes,
            )
        except ValueError as err:  # AudioError (its class decides the status), or a decoder's
            status = audio_error_status(err) if isinstance(err, AudioError) else 422
            item.status, item.detail = status, str(err)
            return
        item.audio = (np.asarray(wave, dtype=np.float32), self.sample_rate_hz)

    def threshold(self, requested: float | None) -> float | None:
        """The threshold of a request: its own ``min_confidence`` (422 outside [0, 1]),
        else the server's."""
        if requested is None:
            return self.min_confidence
        try:
            return check_min_confidence(requested, "field 'min_confidence'")
        except ValueError as err:
            raise RequestProblem(422, str(err)) from None

    def predict_items(
        self, items: list[Item], min_confidence: float | None = None, speaker: str | None = None
    ) -> list[PredictionOut | None]:
        """Decode and predict the good items; a bad one gets its own status.
        ``min_confidence``: the request's threshold (default: the server's); ``speaker``:
        the session whose running statistics the clips are added to, then scored with."""
        threshold = self.threshold(min_confidence)
        speaker = request_speaker(speaker)
        for item in items:
            self.decode_item(item)
        good = [item for item in items if item.status == 200]
        scored = isolate_failures(
            lambda batch: self._predict(batch, threshold, speaker), good, ValueError
        )
        results: dict[int, PredictionOut] = {}
        for item, attempt in zip(good, scored, strict=True):
            if attempt.error is not None:  # e.g. a transcript the model cannot use
                item.status, item.detail = 422, str(attempt.error)
            else:
                results[item.index] = attempt.value
        return [results.get(item.index) for item in items]

    def _predict(
        self, items: list[Item], threshold: float | None, speaker: str | None = None
    ) -> list[PredictionOut]:
        audio = [item.audio for item in items]
        texts = [item.text for item in items]
        use_texts = texts if any(t is not None for t in texts) else None
        if speaker is None or not self.adapts:
            predictions = self.predictor.predict(audio, use_texts, asr=self.asr)
            note = [SPEAKER_NOT_USED] if speaker is not None else []
            return [
                self.out(p, threshold, [*item.notes, *note])
                for p, item in zip(predictions, items, strict=True)
            ]
        with self.speakers.use(speaker) as running:  # added before scoring, in order
            # one batch: a failure then adds nothing, and the retry of each item alone
            # (isolate_failures) never counts a clip twice in the session's statistics
            predictions = self.predictor.predict(
                audio, use_texts, asr=self.asr, speaker=speaker, running_stats=running,
                batch_size=max(len(audio), 1),
            )  # fmt: skip
        return [
            self.out(p, threshold, item.notes) for p, item in zip(predictions, items, strict=True)
        ]

    def out(
        self,
        prediction: PredictionLike,
        threshold: float | None = None,
        warnings: Sequence[str] = (),
    ) -> PredictionOut:
        """The response for one prediction (:func:`emofuse.predict.rows.prediction_fields`);
        ``uncertain`` from its probabilities by the one rule, so any predictor (not only a
        bundle) gets it."""
        fields = prediction_fields(prediction, min_confidence=threshold)
        fields["warnings"] = [*fields["warnings"], *warnings]
        return PredictionOut(
            **fields, model=ModelInfo(modality=self.modality), min_confidence=threshold
        )

    def health(self, in_flight: int) -> HealthOut:
        return HealthOut(
            status="ok",
            modality=self.modality,
            labels=self.labels,
            needs_text=self.needs_text,
            needs_audio=self.needs_audio,
            asr=self.asr is not None,
            in_flight=in_flight,
            max_in_flight=self.limits.max_in_flight,
            max_audio_s=self.limits.max_audio_s,
            max_body_bytes=self.limits.max_body_bytes,
            max_batch_files=self.limits.max_batch_files,
            adapts_to_speakers=self.adapts,
            speaker_sessions=len(self.speakers),
            max_speaker_sessions=self.speakers.max_sessions,
        )


class Slots:
    """At most ``max_in_flight`` predictions at once; a request that waits longer than the
    queue timeout gets 503 + Retry-After. The semaphore is made per event loop (test
    clients and servers may each run their own loop)."""

    def __init__(
        self, limits: ServeLimits, *, capacity: int | None = None, what: str = "predictions"
    ):
        self.limits = limits
        self.capacity = limits.max_in_flight if capacity is None else capacity
        self.what = what
        self.in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.capacity)
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
                f"server busy: {self.capacity} {self.what} already running and "
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
        from starlette.concurrency import run_in_threadpool

        async with self.hold():
            return await run_in_threadpool(fn, *args)
