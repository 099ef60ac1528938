"""The built-in demo corpus: a small Korean emotional-speech corpus made entirely in code.

`make_demo_corpus(out_dir)` writes clips in the AI-Hub dataset-466 layout (one WAV plus
one JSON label file per clip), so every step of the pipeline can run with no download.
The text is real Korean written for this project (`emofuse.demo.sentences`); the audio is
not speech but a voice-like buzz (`emofuse.demo.voice`). `ensure_demo_corpus(root)`
reuses a finished corpus while the settings recorded in its folder match, and remakes it
otherwise. `emofuse demo-data` is the command for `make_demo_corpus`.

Read top to bottom: the layout's names, the writer, the recorded settings.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from emofuse.demo.sentences import SENTENCES
from emofuse.demo.voice import NOISE_FLOOR, Speaker, make_speakers, synthesize
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
_README_MARK = "emofuse demo corpus"
#: Present while a corpus is being written; README.txt appears only once it is complete.
_IN_PROGRESS = ".emofuse-demo-in-progress"


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


# --- Recorded settings -------------------------------------------------------------------


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
