"""The demo corpus's voice: a voice-like buzz synthesised with numpy, not speech.

Glottal pulses through formant resonators, one syllable-like pulse of loudness per Hangul
syllable, whose pitch, contour, loudness, speaking rate, voice quality and jitter/shimmer
follow the emotion, the speaker and some per-clip chance. Emotions overlap on purpose, so
the task is learnable from prosody but not trivial. `emofuse.demo.corpus` writes the
clips this module makes.

Read top to bottom: emotion prosody table, speakers, the synthesiser.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from emofuse.modalities import DEFAULT_SAMPLE_RATE_HZ

NOISE_FLOOR = 10 ** (-62 / 20)  # room noise under every clip, -62 dBFS RMS


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
