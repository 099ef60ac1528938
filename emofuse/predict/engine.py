"""The prediction engine: one path from a clip (and its transcript) to a label, for every
caller.

`emofuse predict` (one clip or a manifest, :mod:`emofuse.predict.manifest`), the HTTP
service, the timeline and :meth:`emofuse.bundle.Bundle.predict` all go through
:class:`PredictionEngine`, which turns raw inputs into vectors and ends in
:func:`emofuse.head.score.probabilities_from_features` (as `emofuse evaluate` and the
grids do): the one waveform loader (:func:`emofuse.audio.load_waveform`), the one text
cleaning (:func:`emofuse.text.clean_text`, what the feature store keys and encodes),
speech recognition when a transcript is missing, and batched encoding. So a clip gets the
same vector and the same probabilities whichever way it is scored.

A confidence threshold (``min_confidence``) marks a prediction ``uncertain`` when its top
probability (the fused one for a ``both`` bundle) is below it, by the one rule of
:mod:`emofuse.head.confidence`; the label stays the most probable one.

A bundle that adapts to speakers (``bundle.speaker_norm``) normalises each clip by the
statistics of its speaker (``PredictInput.speaker``) first: by default those of all the
clips of that speaker in the call, so every clip is encoded before any is scored; or fixed
or running statistics given by the caller (:mod:`emofuse.predict.adapt`). Encoding and
scoring are two public steps (:meth:`PredictionEngine.encode`,
:meth:`PredictionEngine.score`) for callers that gather statistics over more than one call
(``predict --manifest``, the timeline). ``Prediction.speaker_clips`` says how many clips
the statistics came from.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emofuse import audio_checks
from emofuse.asr import Transcriber
from emofuse.audio import AudioError, AudioSource, LongPolicy, is_silent, load_waveform
from emofuse.bundle.layout import BundleError
from emofuse.bundle.prediction import Prediction
from emofuse.encoders.base import Encoder, EncoderError
from emofuse.head.confidence import check_min_confidence, is_uncertain
from emofuse.head.score import (
    ScoringError,
    agreement,
    modality_probabilities,
    probabilities_from_features,
    stacked_features,
)
from emofuse.head.speaker_stats import Moments, speaker_key
from emofuse.isolation import isolate_failures
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ, SPEECH, TEXT
from emofuse.predict.adapt import call_statistics, row_statistics
from emofuse.predict.encoded import Encoded, EncodedEach
from emofuse.text import clean_text

if TYPE_CHECKING:
    from emofuse.bundle.load import Bundle

#: How a model that reads text can be given it; quoted in every "no text" message.
TEXT_WAYS_OUT = "pass --text '...' or --asr vosk (Python: texts=[...] or asr=build_asr('vosk'))"
SILENT_WARNING = (
    "the clip is digital silence (no sample above -80 dBFS): there is no voice to read, "
    "so this label says nothing"
)
TEXT_IGNORED_WARNING = "this is a speech model: the text was not used"
#: Two texts of characters no text encoder has a word for (private-use code points), of
#: different lengths: the yardstick of :meth:`PredictionEngine._no_known_words`.
NO_WORDS_PROBES = ("\ue000", "\ue001\ue002 \ue003\ue004\ue005")
NO_KNOWN_WORDS_WARNING = (
    "the text has no word the text encoder {spec!r} knows: it reads the same as any "
    "other unknown text, so {consequence}"
)
EMPTY_ASR_WARNING = (
    "speech recognition heard no words: the text branch saw an empty transcript, "
    "so this prediction rests on the audio alone"
)
#: Errors that fail one input of a batch (bad audio, an encoder refusing a clip), not the run.
ITEM_ERRORS = (AudioError, BundleError, ValueError, RuntimeError)


class PredictionError(BundleError):
    """An input the model cannot score (no text for a text model, features of the wrong
    shape, an encoder failure); the message names the clip and the way out."""


# ----------------------------------------------------------------------------- inputs


@dataclass
class PredictInput:
    """One clip and/or its transcript. ``audio`` is a path, uploaded bytes or a
    ``(waveform, sample_rate_hz)`` pair; ``name`` is used in messages; ``speaker`` names
    whose statistics a bundle that adapts to speakers normalises the clip by (blank: none)."""

    audio: AudioSource | None = None
    text: str | None = None
    name: str | None = None
    speaker: Any = None

    def label(self, index: int) -> str:
        if self.name:
            return self.name
        if isinstance(self.audio, str | Path):
            return str(self.audio)
        return f"clip {index}" if self.audio is not None else f"text {index}"


@dataclass
class Outcome:
    """A prediction, or the problem that kept this one input from getting one."""

    prediction: Prediction | None
    error: Exception | None = None


@dataclass
class _Prepared:
    wave: np.ndarray | None = None
    text: str | None = None
    warnings: list[str] = field(default_factory=list)
    speaker: Any = None


# ----------------------------------------------------------------------------- the engine


class PredictionEngine:
    """A bundle's encoders and head applied to raw inputs.

    ``max_duration_s`` and ``long_policy`` go to the waveform loader: by default a clip
    longer than :data:`emofuse.audio_checks.MAX_CLIP_S` is refused from its header,
    before decoding (the one length policy, see :mod:`emofuse.audio_checks`). Inputs are
    read, encoded and scored ``batch_size`` at a time, so memory is bounded by a batch.
    Warnings (digital silence, text a speech model ignores, ASR that heard nothing, a text
    with no word the encoder knows) go to ``Prediction.extra["warnings"]``.
    ``min_confidence`` (in [0, 1]; None or 0: off) sets ``Prediction.uncertain`` by
    :func:`is_uncertain`.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        asr: Transcriber | None = None,
        batch_size: int = 16,
        max_duration_s: float | None = None,
        long_policy: LongPolicy = "error",
        min_confidence: float | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        limit = audio_checks.MAX_CLIP_S if max_duration_s is None else float(max_duration_s)
        if not limit > 0:
            raise ValueError(f"max_duration_s must be positive, not {max_duration_s}")
        self.bundle = bundle
        self.asr = asr
        self.batch_size = batch_size
        self.audio_options: dict[str, Any] = {"max_duration_s": limit, "long_policy": long_policy}
        self.min_confidence = check_min_confidence(min_confidence)
        self._no_words: np.ndarray | None = None

    @property
    def sample_rate_hz(self) -> int:
        if self.bundle.needs_audio:
            return int(self.bundle.encoder(SPEECH).sample_rate_hz)
        return DEFAULT_SAMPLE_RATE_HZ

    @property
    def speaker_norm(self) -> Any:
        """The bundle's speaker normalisation (None: it does not adapt to speakers)."""
        return getattr(self.bundle, "speaker_norm", None)

    def adapts(self, speakers: Sequence[Any]) -> bool:
        """Whether clips of these speakers get adapted: the bundle adapts and one is named."""
        return self.speaker_norm is not None and any(speaker_key(s) for s in speakers)

    # -- public
    def predict(
        self,
        items: Sequence[PredictInput],
        *,
        speaker_stats: Mapping[str, Moments] | None = None,
        running_stats: MutableMapping[str, Moments] | None = None,
    ) -> list[Prediction]:
        """Predictions in input order; the first bad input raises its error. Speakers
        (``PredictInput.speaker``) are adapted with ``speaker_stats`` (fixed),
        ``running_stats`` (updated in place) or, without either, the statistics of their
        clips in ``items`` (:mod:`emofuse.predict.adapt`)."""
        if self._whole_call(items, speaker_stats=speaker_stats, running_stats=running_stats):
            encoded = self.encode(items)
            return self.score(encoded, speaker_stats=self.statistics(encoded))
        out: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = self.encode(items[start : start + self.batch_size], start)
            out += self.score(chunk, speaker_stats=speaker_stats, running_stats=running_stats)
        return out

    def predict_each(self, items: Sequence[PredictInput], **statistics: Any) -> list[Outcome]:
        """One :class:`Outcome` per input: a bad input fails alone, the rest are scored
        (speakers as in :meth:`predict`, whose ``speaker_stats`` / ``running_stats`` it
        takes; a bad input adds nothing to the statistics)."""
        outcomes = [Outcome(None) for _ in items]
        if self._whole_call(items, **statistics):
            stages = [self.encode_each(items)]  # every clip encoded before any is scored
            statistics = {"speaker_stats": self.statistics(stages[0].encoded)}
        else:  # a batch of waveforms at a time
            stages = (
                self.encode_each(items[start : start + self.batch_size], start)
                for start in range(0, len(items), self.batch_size)
            )
        for stage in stages:
            for i, err in stage.errors.items():
                outcomes[i] = Outcome(None, err)
            scored = self.score_each(stage.encoded, **statistics)
            for i, outcome in zip(stage.rows, scored, strict=True):
                outcomes[i] = outcome
        return outcomes

    def encode(self, items: Sequence[PredictInput], offset: int = 0) -> Encoded:
        """The inputs' vectors, ``batch_size`` at a time; the first bad input raises
        (``offset``: the position of the first item, for messages)."""
        parts = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            k0 = offset + start
            parts.append(self._encode([self._prepare(x, k0 + k) for k, x in enumerate(chunk)]))
        return Encoded.join(parts, int(self.bundle.head.input_dim))

    def encode_each(self, items: Sequence[PredictInput], offset: int = 0) -> EncodedEach:
        """The good inputs' vectors and each bad input's error (positions from ``offset``)."""
        parts: list[Encoded] = []
        rows: list[int] = []
        errors: dict[int, Exception] = {}
        for start in range(0, len(items), self.batch_size):
            chunk: dict[int, _Prepared] = {}
            for i in range(start, min(start + self.batch_size, len(items))):
                try:
                    chunk[offset + i] = self._prepare(items[i], offset + i)
                except ITEM_ERRORS as err:
                    errors[offset + i] = err
            encoded = isolate_failures(
                lambda batch: self._encode(batch).split(), list(chunk.values()), ITEM_ERRORS
            )
            for i, attempt in zip(chunk, encoded, strict=True):
                if attempt.error is not None:
                    errors[i] = attempt.error
                else:
                    rows.append(i)
                    parts.append(attempt.value)
        return EncodedEach(Encoded.join(parts, int(self.bundle.head.input_dim)), rows, errors)

    def statistics(self, encoded: Encoded) -> dict[str, Moments]:
        """Each named speaker's statistics over the rows of ``encoded``; empty when the
        bundle does not adapt."""
        return call_statistics(self.speaker_norm, encoded.x, encoded.speakers)

    def score(
        self,
        encoded: Encoded,
        *,
        speaker_stats: Mapping[str, Moments] | None = None,
        running_stats: MutableMapping[str, Moments] | None = None,
    ) -> list[Prediction]:
        """Predictions for encoded rows (speakers as in :meth:`predict`, the call being
        these rows)."""
        bundle = self.bundle
        norm = self.speaker_norm
        plan = row_statistics(
            norm, encoded.x, encoded.speakers,
            speaker_stats=speaker_stats, running_stats=running_stats,
        )  # fmt: skip
        adapt = {"speakers": plan.keys, "speaker_stats": plan.stats}
        try:
            probabilities = probabilities_from_features(bundle, encoded.x, **adapt)
            by_modality = modality_probabilities(bundle, encoded.x, **adapt)
        except ScoringError as err:
            raise PredictionError(str(err)) from err
        plan.commit()
        agree = agreement(by_modality)
        labels = bundle.labels

        def as_dict(row: np.ndarray) -> dict[str, float]:
            return {label: float(p) for label, p in zip(labels, row, strict=True)}

        return [
            Prediction(
                label=labels[int(row.argmax())],
                probabilities=as_dict(row),
                text=encoded.texts[i],
                extra={"warnings": list(encoded.warnings[i])} if encoded.warnings[i] else {},
                by_modality={m: as_dict(v[i]) for m, v in by_modality.items()} or None,
                agree=bool(agree[i]) if agree is not None else None,
                uncertain=is_uncertain(row, self.min_confidence),
                speaker_clips=plan.clips[i],
            )
            for i, row in enumerate(probabilities)
        ]

    def score_each(self, encoded: Encoded, **statistics: Any) -> list[Outcome]:
        """:meth:`score` (and its ``speaker_stats`` / ``running_stats``), ``batch_size``
        rows at a time, a row that fails failing alone."""
        out: list[Outcome] = []
        for start in range(0, len(encoded), self.batch_size):
            rows = list(range(start, min(start + self.batch_size, len(encoded))))
            scored = isolate_failures(
                lambda batch: self.score(encoded.take(batch), **statistics),
                rows,
                ITEM_ERRORS,
            )
            out += [Outcome(attempt.value, attempt.error) for attempt in scored]
        return out

    def _whole_call(self, items, *, speaker_stats=None, running_stats=None) -> bool:
        """Whether the call's own statistics are needed (then all is encoded first)."""
        given = speaker_stats is not None or running_stats is not None
        return not given and self.adapts([item.speaker for item in items])

    # -- steps
    def _prepare(self, item: PredictInput, index: int) -> _Prepared:
        """Waveform (if the model or ASR needs one), cleaned text (given or transcribed)."""
        bundle, name = self.bundle, item.label(index)
        out = _Prepared(speaker=item.speaker)
        given = clean_text(item.text) if item.text is not None else ""
        needs_transcript = bundle.needs_text and not given
        if bundle.needs_audio or (needs_transcript and self.asr is not None):
            if item.audio is None:
                raise PredictionError(f"{name}: a {bundle.modality} model needs audio")
            out.wave = load_waveform(  # notes: truncated / narrowband warnings
                item.audio, self.sample_rate_hz, name=name, notes=out.warnings,
                **self.audio_options,
            )  # fmt: skip
            if bundle.needs_audio and is_silent(out.wave):
                out.warnings.append(SILENT_WARNING)
        if not bundle.needs_text:
            if given:
                out.warnings.append(TEXT_IGNORED_WARNING)
            return out
        if given:
            out.text = given
            return out
        if self.asr is None or out.wave is None:
            blank = isinstance(item.text, str)  # given, but nothing once white space goes
            raise PredictionError(
                f"{name}: this bundle reads text ({bundle.encoder_spec(TEXT)!r}) and "
                + ("the text given is blank (empty or white space only)" if blank
                   else "none was given")
                + f": {TEXT_WAYS_OUT}"
            )  # fmt: skip
        try:
            heard = self.asr.transcribe(out.wave, self.sample_rate_hz)
        except AudioError:
            raise
        except Exception as err:  # an ASR failure names the clip it failed on
            raise PredictionError(f"{name}: speech recognition failed ({err})") from err
        out.text = clean_text(heard)
        if not out.text:  # a recogniser may say better where its words came from
            out.warnings.append(getattr(self.asr, "empty_warning", EMPTY_ASR_WARNING))
        return out

    def _encode(self, prepared: Sequence[_Prepared]) -> Encoded:
        """A batch of prepared inputs through the encoders: x = [A; T], checked."""
        bundle = self.bundle
        features: dict[str, np.ndarray] = {}
        if bundle.needs_audio:
            features[SPEECH] = encode_batches(
                bundle.encoder(SPEECH), [p.wave for p in prepared], self.batch_size
            )
        notes = [list(p.warnings) for p in prepared]
        if bundle.needs_text:
            features[TEXT] = encode_batches(
                bundle.encoder(TEXT), [p.text for p in prepared], self.batch_size
            )
            for note, p, vector in zip(notes, prepared, features[TEXT], strict=True):
                if p.text and self._no_known_words(vector):
                    note.append(self._no_words_warning())
        try:
            x = stacked_features(bundle.head, features)
        except ScoringError as err:
            raise PredictionError(str(err)) from err
        return Encoded(x, [p.text for p in prepared], notes, [p.speaker for p in prepared])

    def _no_known_words(self, vector: np.ndarray) -> bool:
        """Whether a text's vector says the encoder knew none of its words, decided here
        for every text encoder: the vector is all zeros, or it points where the vectors
        of both :data:`NO_WORDS_PROBES` point. A vocabulary encoder gives every text
        without a known word one vector, whatever its length (TF-IDF: zeros or a fixed
        offset, a linear model: its intercept, a counter: its unknown-word bucket, scaled);
        an encoder whose two probes differ (a dense model, a length feature) has no such
        vector, and only all zeros counts."""
        v = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            return True
        if self._no_words is None:
            self._no_words = self._no_words_direction()
        ref = self._no_words
        if ref.shape != v.shape or not np.isfinite(norm):
            return False
        return float(v @ ref) / norm > 1.0 - 1e-9

    def _no_words_direction(self) -> np.ndarray:
        """The unit vector every no-known-word text gets, or an empty array if none."""
        try:
            probes = encode_batches(self.bundle.encoder(TEXT), list(NO_WORDS_PROBES), 2)
        except ITEM_ERRORS:  # an encoder that refuses the probes: zeros are the only sign
            return np.zeros(0)
        a, b = np.asarray(probes, dtype=np.float64)
        norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if not (norm_a > 0 and norm_b > 0 and np.isfinite(norm_a * norm_b)):
            return np.zeros(0)
        if float(a @ b) / (norm_a * norm_b) <= 1.0 - 1e-9:
            return np.zeros(0)
        return a / norm_a

    def _no_words_warning(self) -> str:
        consequence = (
            "this prediction rests on the audio alone"
            if self.bundle.needs_audio
            else "this label says nothing about the text"
        )
        spec = self.bundle.encoder_spec(TEXT)
        return NO_KNOWN_WORDS_WARNING.format(spec=spec, consequence=consequence)


def encode_batches(encoder: Encoder, items: Sequence[Any], batch_size: int) -> np.ndarray:
    """``encoder.encode`` over ``items`` in batches, as one float32 matrix."""
    try:
        out = [
            np.asarray(encoder.encode(list(items[i : i + batch_size])), dtype=np.float32)
            for i in range(0, len(items), batch_size)
        ]
    except EncoderError as err:  # a clip the encoder cannot read: the caller's input problem
        raise PredictionError(
            f"the {encoder.modality} encoder {encoder.spec!r} failed: {err}"
        ) from err
    return np.vstack(out)
