"""The built-in demo corpus: a small Korean emotional-speech corpus made entirely in code.

`make_demo_corpus(out_dir)` writes clips in the AI-Hub dataset-466 layout (one WAV plus
one JSON label file per clip), so every step of the pipeline can run with no download.
The text is real Korean written for this project (`emofuse.demo.sentences`); the audio is
not speech but a voice-like buzz synthesised with numpy: glottal pulses through formant
resonators, one syllable-like pulse of loudness per Hangul syllable, whose pitch, contour,
loudness, speaking rate, voice quality and jitter/shimmer follow the emotion, the speaker
and some per-clip chance. Emotions overlap on purpose, so the task is learnable from
prosody but not trivial.

Read top to bottom: emotion prosody table, speakers, the synthesiser, the writer.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.demo.sentences import SENTENCES
from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

#: Emotion folders of dataset 466, in the corpus's own numbering.
EMOTION_FOLDERS: tuple[str, ...] = ("기쁨", "슬픔", "분노", "불안", "상처", "당황", "중립")

#: 4-bit Microsoft ADPCM keeps the default corpus within a few MB at 16 kHz with good
#: fidelity; soundfile/libsndfile (and so opensmile) read it. "PCM_16" is the most
#: widely readable choice and about four times larger.
DEFAULT_SUBTYPE = "MS_ADPCM"
README_NAME = "README.txt"
#: The settings a finished corpus was made with (so a changed setting rebuilds it).
SETTINGS_NAME = "emofuse-demo.json"
NOISE_FLOOR = 10 ** (-62 / 20)  # room noise under every clip, -62 dBFS RMS
_README_MARK = "emofuse demo corpus"
#: Present while a corpus is being written; README.txt appears only once it is complete.
_IN_PROGRESS = ".emofuse-demo-in-progress"


# --- Emotion prosody ---------------------------------------------------------------------


@dataclass(frozen=True)
class Prosody:
    """How an emotion colours the voice, relative to the speaker's neutral voice."""

    pitch_st: float  # mean pitch offset, semitones
    range_st: float  # size of the syllable-to-syllable pitch movements, semitones
    slope_st: float  # pitch change from the first to the last syllable, semitones
    final_st: float  # extra movement on the last syllable (+ rise, - fall), semitones
    tremor_st: float  # depth of a 5-7 Hz pitch wobble, semitones
    level_db: float  # loudness offset, dB
    rate_sps: float  # speaking rate, syllables per second
    rate_var: float  # irregularity of syllable lengths (log-normal sigma)
    pause_s: float  # pause at a word boundary, seconds
    hesitation: float  # chance of an extra hesitation pause at a word boundary
    jitter: float  # cycle-to-cycle period perturbation (fraction of a period)
    shimmer: float  # cycle-to-cycle amplitude perturbation (fraction)
    breath: float  # aspiration noise relative to the voiced source
    corner_hz: float  # glottal roll-off corner: higher = brighter, more pressed voice


# Angry: loud, fast, bright, falling, rough. Sad: low, slow, soft, dark, breathy.
# Happy: high, wide, lively. Anxious: high, fast, trembling. Embarrassed: hesitant,
# rising. Hurt: like sad but less so, with a catch in the voice. Neutral: flat.
# fmt: off
PROSODY: dict[str, Prosody] = {
    #          pitch range slope final tremor level rate  rate_var pause hesit jitter shimmer breath corner
    "기쁨": Prosody( 3.5, 4.5, -1.0,  2.0, 0.0,  3.0, 20.0, 0.15, 0.025, 0.04, 0.006, 0.05, 0.05, 380),
    "슬픔": Prosody(-2.5, 1.2, -2.0, -1.0, 0.0, -6.0, 14.5, 0.15, 0.045, 0.08, 0.012, 0.08, 0.16, 150),
    "분노": Prosody( 2.0, 3.0, -4.0, -3.0, 0.0,  6.0, 21.0, 0.12, 0.020, 0.03, 0.016, 0.09, 0.03, 560),
    "불안": Prosody( 4.5, 2.0,  0.5,  1.0, 0.7, -1.5, 21.0, 0.22, 0.025, 0.12, 0.013, 0.07, 0.10, 270),
    "상처": Prosody(-1.0, 2.0, -3.0, -2.0, 0.3, -3.5, 16.5, 0.18, 0.040, 0.08, 0.011, 0.07, 0.12, 180),
    "당황": Prosody( 2.0, 3.5,  0.0,  3.0, 0.2, -1.5, 19.0, 0.30, 0.030, 0.25, 0.009, 0.06, 0.07, 260),
    "중립": Prosody( 0.0, 1.5, -2.5, -1.0, 0.0,  0.0, 18.5, 0.08, 0.030, 0.03, 0.006, 0.04, 0.05, 280),
}
# fmt: on
NEUTRAL = "중립"


# --- Speakers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: identity (as the corpus names it) and voice."""

    number: int
    initials: str
    gender: str  # "F" or "M"
    age_group: int
    f0_hz: float  # neutral pitch
    formant_scale: float  # vocal-tract size (higher = shorter tract)
    level_db: float  # how loud this person speaks
    rate_scale: float  # how fast this person speaks
    expressiveness: float  # how strongly emotion shows in this voice (1 = as in PROSODY)
    breath: float  # extra breathiness of this voice

    @property
    def style(self) -> str:
        # Made-up code in the corpus's shape: G gender, A age group, E/S/C fixed.
        return f"G{1 if self.gender == 'F' else 2}A{self.age_group}E1S0C0"

    @property
    def folder(self) -> str:
        return f"{self.number:04d}_{self.style}_{self.initials}"


_SURNAME_INITIALS = "KLPCJYHSO"
_NAME_LETTERS = "BCDGHJKMNSWY"


def make_speakers(count: int, seed: int = 0) -> list[Speaker]:
    """``count`` speakers, alternating female and male; the first N are the same for any
    larger count with the same seed."""
    rng = np.random.default_rng([seed, 1])
    speakers: list[Speaker] = []
    used: set[str] = set()
    for i in range(count):
        gender = "F" if i % 2 == 0 else "M"
        initials = ""
        while not initials or initials in used:
            initials = rng.choice(list(_SURNAME_INITIALS)) + "".join(
                rng.choice(list(_NAME_LETTERS), size=2)
            )
        used.add(initials)
        female = gender == "F"
        speakers.append(
            Speaker(
                number=i + 1,
                initials=str(initials),
                gender=gender,
                age_group=int(rng.integers(2, 6)),
                f0_hz=float(rng.uniform(185, 245) if female else rng.uniform(100, 140)),
                formant_scale=float(rng.uniform(1.08, 1.2) if female else rng.uniform(0.92, 1.02)),
                level_db=float(rng.normal(0, 2.0)),
                rate_scale=float(rng.uniform(0.9, 1.1)),
                expressiveness=float(rng.uniform(0.65, 1.2)),
                breath=float(rng.uniform(0.0, 0.05)),
            )
        )
    return speakers


# --- Synthesiser -------------------------------------------------------------------------

# Hangul syllable = 0xAC00 + (initial * 21 + vowel) * 28 + final.
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
# Vowel index -> (F1, F2, F3) of an adult male voice, Hz; diphthongs use their end vowel.
_A, _AE, _EO, _O, _U, _EU, _I = (
    (720, 1240, 2500), (520, 1800, 2500), (580, 1000, 2450), (420, 800, 2400),
    (330, 900, 2300), (360, 1400, 2350), (290, 2200, 2950),
)  # fmt: skip
_VOWEL_FORMANTS = (
    _A, _AE, _A, _AE, _EO, _AE, _EO, _AE, _O, _A, _AE, _AE, _O, _U, _EO, _AE, _I, _U, _EU, _I, _I
)  # fmt: skip
_FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0, 250.0)
# Initial consonants heard as noise: ㅅ ㅆ ㅈ ㅉ ㅊ ㅋ ㅌ ㅍ ㅎ.
_NOISY_INITIALS = frozenset({9, 10, 12, 13, 14, 15, 16, 17, 18})


@dataclass(frozen=True)
class Syllable:
    """What the synthesiser needs to know about one Hangul syllable."""

    vowel: int  # medial vowel index (0 ㅏ ... 20 ㅣ)
    noisy_onset: bool
    has_final: bool
    pause_after: int  # 0 none, 1 word boundary, 2 comma, 3 end of sentence


def syllables_of(text: str) -> list[Syllable]:
    """The Hangul syllables of ``text`` with the pause that follows each."""
    out: list[Syllable] = []
    for ch in text:
        code = ord(ch)
        if _HANGUL_FIRST <= code <= _HANGUL_LAST:
            index = code - _HANGUL_FIRST
            vowel, noisy, final = (index % 588) // 28, index // 588 in _NOISY_INITIALS, index % 28
            out.append(Syllable(vowel, noisy, final != 0, pause_after=0))
        elif out and ch in " ,.!?":
            pause = 2 if ch == "," else 1 if ch == " " else 3
            out[-1] = replace(out[-1], pause_after=max(out[-1].pause_after, pause))
    return out


def _resonator_sos(freqs_hz: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Cascade of two-pole resonators (unit gain at 0 Hz), one SOS row per formant."""
    bw = np.asarray(_FORMANT_BANDWIDTHS[: len(freqs_hz)])
    r = np.exp(-np.pi * bw / sample_rate_hz)
    theta = 2 * np.pi * freqs_hz / sample_rate_hz
    a1, a2 = -2 * r * np.cos(theta), r * r
    sos = np.zeros((len(freqs_hz), 6))
    sos[:, 0] = 1 + a1 + a2
    sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, a1, a2
    return sos


def voice_for(emotion: str, speaker: Speaker) -> Prosody:
    """The emotion's prosody as this speaker shows it: ``speaker.expressiveness`` scales
    every departure from neutral (the glottal corner on a log scale)."""
    p, base, k = PROSODY[emotion], PROSODY[NEUTRAL], speaker.expressiveness
    blended = {
        f: getattr(base, f) + k * (getattr(p, f) - getattr(base, f))
        for f in Prosody.__dataclass_fields__
    }
    blended["corner_hz"] = float(base.corner_hz * (p.corner_hz / base.corner_hz) ** k)
    for f in ("rate_var", "pause_s", "hesitation", "jitter", "shimmer", "breath", "tremor_st"):
        blended[f] = max(0.0, blended[f])
    return Prosody(**blended)


def synthesize(
    text: str,
    emotion: str,
    speaker: Speaker,
    rng: np.random.Generator,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
) -> np.ndarray:
    """One clip (float32 mono in [-1, 1]) of ``speaker`` 'saying' ``text`` in ``emotion``."""
    sr = sample_rate_hz
    sylls = syllables_of(text) or [Syllable(0, False, False, 3)]
    v = voice_for(emotion, speaker)

    # Per-clip chance: no two readings of a script are the same.
    rate = v.rate_sps * speaker.rate_scale * rng.lognormal(0, 0.08)
    pitch_st = v.pitch_st + rng.normal(0, 1.3)
    range_st = max(0.3, v.range_st * rng.lognormal(0, 0.25))
    level_db = v.level_db + speaker.level_db + rng.normal(0, 2.0)
    jitter = v.jitter * rng.lognormal(0, 0.3)
    shimmer = v.shimmer * rng.lognormal(0, 0.3)
    breath = (v.breath + speaker.breath) * rng.lognormal(0, 0.3)
    corner_hz = v.corner_hz * rng.lognormal(0, 0.15)
    final_st = v.final_st + (4.0 if text.rstrip().endswith("?") else 0.0)

    starts, lengths, n = _timing(sylls, v, rate, rng, sr)
    t = np.arange(n) / sr
    # Pitch: syllable targets on a sloping line, random accents, a final movement, tremor.
    n_syl = len(sylls)
    targets = pitch_st + v.slope_st * (np.linspace(0, 1, n_syl) - 0.5)
    targets += range_st * rng.uniform(-0.5, 1.0, n_syl)
    targets[-1] += final_st
    semitones = np.interp(t, starts + lengths / 2, targets)
    semitones += v.tremor_st * np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 6.3))
    f0_hz = speaker.f0_hz * 2.0 ** (semitones / 12)

    source = _glottal_source(f0_hz, jitter, shimmer, corner_hz, breath, rng, sr)
    stress = rng.lognormal(0, 0.25 + range_st / 60, n_syl)
    voiced = source * _syllable_envelope(starts, lengths, stress, n, sr)
    out = _vocal_tract(voiced, sylls, starts, lengths, speaker.formant_scale, rng, sr)
    out = _add_hiss(out, sylls, starts, rng, sr)

    # Level: neutral speech sits near -26 dBFS RMS; a faint room-noise floor underneath.
    out *= 10 ** ((level_db - 26.0) / 20) / (np.sqrt(np.mean(out**2)) + 1e-12)
    out += NOISE_FLOOR * rng.standard_normal(n)
    return np.clip(out, -0.999, 0.999).astype(np.float32)


def _timing(
    sylls: list[Syllable], v: Prosody, rate_sps: float, rng: np.random.Generator, sr: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Syllable starts and lengths (s), with pauses after words, commas and hesitations,
    and the clip's length in samples."""
    n_syl = len(sylls)
    lengths = rng.lognormal(0, v.rate_var, n_syl) / rate_sps
    lengths *= np.array([1.15 if s.has_final else 1.0 for s in sylls])
    pauses = np.zeros(n_syl)
    for i, s in enumerate(sylls[:-1]):
        if s.pause_after:
            pauses[i] = v.pause_s * rng.uniform(0.5, 1.5) * (2.5 if s.pause_after >= 2 else 1)
            if rng.random() < v.hesitation:
                pauses[i] += rng.uniform(0.05, 0.12)
    lead_s, tail_s = rng.uniform(0.02, 0.05), rng.uniform(0.03, 0.06)
    starts = lead_s + np.concatenate([[0.0], np.cumsum(lengths + pauses)[:-1]])
    n = int(round((starts[-1] + lengths[-1] + tail_s) * sr))
    return starts, lengths, n


def _glottal_source(
    f0_hz: np.ndarray,
    jitter: float,
    shimmer: float,
    corner_hz: float,
    breath: float,
    rng: np.random.Generator,
    sr: int,
) -> np.ndarray:
    """Glottal pulses with jitter (period) and shimmer (amplitude), placed at fractional
    sample positions so that jitter is not lost to rounding; a two-pole roll-off shapes
    the pulse, the lips differentiate it; aspiration noise rides on each cycle."""
    from scipy.signal import lfilter

    n = len(f0_hz)
    phase = np.cumsum(f0_hz) / sr
    pulse_at = np.flatnonzero(np.diff(np.floor(phase)) > 0).astype(float)
    periods = np.diff(pulse_at, prepend=0.0) * (1 + jitter * rng.standard_normal(len(pulse_at)))
    pulse_at = np.cumsum(np.clip(periods, 1.0, None))
    pulse_at = pulse_at[pulse_at < n - 2]
    amp = np.clip(1 + shimmer * rng.standard_normal(len(pulse_at)), 0.2, None)
    whole = pulse_at.astype(int)
    frac = pulse_at - whole
    source = np.zeros(n)
    np.add.at(source, whole, amp * (1 - frac))
    np.add.at(source, whole + 1, amp * frac)
    pole = np.exp(-2 * np.pi * corner_hz / sr)
    source = lfilter([1.0], [1.0, -2 * pole, pole * pole], source)
    source = np.diff(source, prepend=0.0)
    source /= np.sqrt(np.mean(source**2)) + 1e-12
    return source + 3.0 * breath * rng.standard_normal(n) * (0.5 + 0.5 * np.cos(2 * np.pi * phase))


def _syllable_envelope(
    starts: np.ndarray, lengths: np.ndarray, stress: np.ndarray, n: int, sr: int
) -> np.ndarray:
    """Loudness: one smooth bump per syllable, silent in between."""
    envelope = np.zeros(n)
    for start, length, weight in zip(starts, lengths, stress, strict=True):
        a, b = int(start * sr), min(int((start + length) * sr), n)
        if b - a >= 4:
            envelope[a:b] = weight * np.sin(np.pi * np.linspace(0, 1, b - a)) ** 0.6
    return envelope


def _vocal_tract(
    voiced: np.ndarray,
    sylls: list[Syllable],
    starts: np.ndarray,
    lengths: np.ndarray,
    formant_scale: float,
    rng: np.random.Generator,
    sr: int,
) -> np.ndarray:
    """A four-formant cascade set to each syllable's vowel (filter state carried over)."""
    from scipy.signal import sosfilt

    n = len(voiced)
    ends = [int((s + length) * sr) for s, length in zip(starts[:-1], lengths[:-1], strict=True)]
    bounds = [0, *ends, n]
    out = np.zeros(n)
    state = np.zeros((4, 2))
    for syl, a, b in zip(sylls, bounds[:-1], bounds[1:], strict=True):
        freqs = np.array([*_VOWEL_FORMANTS[syl.vowel], 3500.0]) * formant_scale
        freqs = np.minimum(freqs * rng.uniform(0.96, 1.04, 4), 0.45 * sr)
        out[a:b], state = sosfilt(_resonator_sos(freqs, sr), voiced[a:b], zi=state)
    return out


def _add_hiss(
    out: np.ndarray,
    sylls: list[Syllable],
    starts: np.ndarray,
    rng: np.random.Generator,
    sr: int,
) -> np.ndarray:
    """The hiss of ㅅ ㅈ ㅊ ㅎ ... at syllable onsets, outside the vocal tract."""
    from scipy.signal import butter, sosfilt

    highpass = butter(2, 2500, "highpass", fs=sr, output="sos")
    level = np.sqrt(np.mean(out**2)) + 1e-12
    for syl, start in zip(sylls, starts, strict=True):
        a = int(start * sr)
        m = min(int(rng.uniform(0.02, 0.04) * sr), len(out) - a)
        if syl.noisy_onset and m > 8:
            out[a : a + m] += (
                0.8 * level * sosfilt(highpass, rng.standard_normal(m)) * np.hanning(m)
            )
    return out


# --- Writer ------------------------------------------------------------------------------


def _frames_per_block(sample_rate_hz: int, subtype: str) -> int:
    """Frames per coding block of ``subtype`` (1 for PCM): clips are padded to whole
    blocks so that the header's duration is the audio's true length."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(1, dtype=np.float32), sample_rate_hz, subtype=subtype, format="WAV")
    buf.seek(0)
    return sf.info(buf).frames


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready: new or empty, or (with ``overwrite``) holding an earlier demo
    corpus, finished (our README) or interrupted (our in-progress marker)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        readme = out / README_NAME
        ours = (out / _IN_PROGRESS).exists() or (
            readme.is_file() and _README_MARK in readme.read_text(encoding="utf-8")
        )
        if not overwrite:
            raise FileExistsError(
                f"{out}: directory is not empty"
                + (" (an earlier demo corpus: pass overwrite=True / --force)" if ours else "")
            )
        if not ours:
            raise FileExistsError(
                f"{out}: not empty and not a demo corpus (no {README_NAME} of ours); "
                "refusing to overwrite"
            )
        for part in ("Training", "Validation"):
            shutil.rmtree(out / part, ignore_errors=True)
        readme.unlink(missing_ok=True)
        (out / SETTINGS_NAME).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _readme(speakers: list[Speaker], n_val: int, scripts: int, seed: int, subtype: str) -> str:
    train = ", ".join(s.folder for s in speakers[: len(speakers) - n_val]) or "-"
    val = ", ".join(s.folder for s in speakers[len(speakers) - n_val :]) or "-"
    folders = " ".join(f"{i}.{e}" for i, e in enumerate(EMOTION_FOLDERS, start=1))
    return f"""{_README_MARK}

A small synthetic corpus made by emofuse (`emofuse demo-data`, seed {seed}) in the layout
of AI-Hub dataset 466, so that the whole pipeline runs with no download. Free to use.

- Text: Korean sentences written for emofuse, {scripts} per emotion; every speaker reads
  every script. Script number = emotion folder number * 100 + sentence number.
- Audio: NOT speech. A voice-like buzz synthesised with numpy (glottal pulses through
  formant resonators, one loudness pulse per Hangul syllable) whose pitch, contour,
  loudness, speaking rate, voice quality and jitter/shimmer depend on the emotion, the
  speaker and chance. 16 kHz mono WAV ({subtype}).
- Emotions: {folders}
- Training/ speakers: {train}
- Validation/ speakers (held out, none of their clips is in Training/): {val}

Layout: <part>/원천데이터/1.감정/<n>.<감정>/<speaker>/<speaker>_<script>.wav and the
label JSON at the same path under <part>/라벨링데이터/ (파일정보, 전사정보, 화자정보).
"""


def make_demo_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    speakers: int = 4,
    scripts_per_emotion: int = 30,
    validation_speakers: int = 1,
    subtype: str = DEFAULT_SUBTYPE,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the demo corpus under ``out_dir`` and return that path.

    7 emotions x ``scripts_per_emotion`` scripts x ``speakers`` clips, every speaker
    reading every script. The last ``validation_speakers`` speakers go to
    ``Validation/`` (a speaker-disjoint held-out part), the rest to ``Training/``.
    The same arguments give the same bytes. ``overwrite`` replaces an earlier demo corpus
    in ``out_dir`` (never any other content).
    """
    import soundfile as sf
    from tqdm import tqdm

    available = min(len(v) for v in SENTENCES.values())
    if not 1 <= scripts_per_emotion <= available:
        raise ValueError(f"scripts_per_emotion must be 1..{available}, got {scripts_per_emotion}")
    if speakers < 1 or speakers > 9999:
        raise ValueError(f"speakers must be 1..9999, got {speakers}")
    if not 0 <= validation_speakers < speakers:
        raise ValueError(
            f"validation_speakers must be 0..{speakers - 1} (some speakers must be left for "
            f"Training), got {validation_speakers}"
        )
    if subtype not in sf.available_subtypes("WAV"):
        raise ValueError(f"unknown WAV subtype {subtype!r}; e.g. MS_ADPCM, PCM_16, ULAW")

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    (out / _IN_PROGRESS).touch()
    people = make_speakers(speakers, seed)
    sr = DEFAULT_SAMPLE_RATE_HZ
    block = _frames_per_block(sr, subtype)
    jobs = [
        (folder_no, emotion, j, person)
        for folder_no, emotion in enumerate(EMOTION_FOLDERS, start=1)
        for j in range(scripts_per_emotion)
        for person in people
    ]
    for folder_no, emotion, j, person in tqdm(
        jobs, desc="demo corpus", unit="clip", disable=not progress
    ):
        text = SENTENCES[emotion][j]
        script = folder_no * 100 + j + 1
        rng = np.random.default_rng([seed, 2, person.number, script])
        audio = synthesize(text, emotion, person, rng, sr)
        pad = (-len(audio)) % block
        if pad:
            floor = NOISE_FLOOR * rng.standard_normal(pad)
            audio = np.concatenate([audio, floor.astype(np.float32)])

        part = "Validation" if person.number > speakers - validation_speakers else "Training"
        rel = Path("1.감정", f"{folder_no}.{emotion}", person.folder)
        stem = f"{person.folder}_{script:06d}"
        wav_path = out / part / "원천데이터" / rel / f"{stem}.wav"
        json_path = out / part / "라벨링데이터" / rel / f"{stem}.json"
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # encode in memory: one write per file is much faster
        sf.write(buf, audio, sr, subtype=subtype, format="WAV")
        wav_path.write_bytes(buf.getvalue())
        label = {
            "파일정보": {
                "FileName": wav_path.name,
                "SampleRate": sr,
                "Duration": round(len(audio) / sr, 4),
            },
            "전사정보": {"OrgLabelText": text, "TransLabelText": text},
            "화자정보": {
                "SpeakerName": person.initials,
                "Gender": person.gender,
                "Emotion": emotion,
                "Style": person.style,
            },
        }
        json_path.write_text(json.dumps(label, ensure_ascii=False), encoding="utf-8")

    readme = _readme(people, validation_speakers, scripts_per_emotion, seed, subtype)
    (out / README_NAME).write_text(readme, encoding="utf-8")
    settings = demo_settings(
        seed=seed,
        speakers=speakers,
        scripts_per_emotion=scripts_per_emotion,
        validation_speakers=validation_speakers,
        subtype=subtype,
    )
    (out / SETTINGS_NAME).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    (out / _IN_PROGRESS).unlink()
    return out


def demo_settings(
    *,
    seed: int = 0,
    speakers: int = 4,
    scripts_per_emotion: int = 30,
    validation_speakers: int = 1,
    subtype: str = DEFAULT_SUBTYPE,
) -> dict[str, int | str]:
    """What makes one demo corpus (:func:`make_demo_corpus`'s keywords, defaults filled
    in), as recorded in its folder."""
    return {
        "seed": seed,
        "speakers": speakers,
        "scripts_per_emotion": scripts_per_emotion,
        "validation_speakers": validation_speakers,
        "subtype": subtype,
    }


def recorded_settings(root: str | Path) -> dict[str, Any] | None:
    """The settings of the finished demo corpus in ``root`` (None: none there, an
    unfinished one, or one made before settings were recorded)."""
    path = Path(root) / SETTINGS_NAME
    if not (Path(root) / README_NAME).is_file() or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def demo_corpus_is_current(root: str | Path, **settings: Any) -> bool:
    """Whether ``root`` holds a finished demo corpus made with exactly ``settings``
    (keywords of :func:`demo_settings`; the ones left out take their defaults)."""
    return recorded_settings(root) == demo_settings(**settings)


def ensure_demo_corpus(root: str | Path, *, progress: bool = False, **settings: Any) -> bool:
    """Make sure ``root`` holds the demo corpus of ``settings`` (``seed``, ``speakers``,
    ``scripts_per_emotion``, ``validation_speakers``, ``subtype``; see
    :func:`demo_settings`): reuse it when the settings recorded in the folder match,
    otherwise (re)build it there (an earlier demo corpus is replaced; any other content is
    refused). True when it was (re)built."""
    wanted = demo_settings(**settings)
    if recorded_settings(root) == wanted:
        return False
    make_demo_corpus(root, **wanted, overwrite=True, progress=progress)  # type: ignore[arg-type]
    return True
