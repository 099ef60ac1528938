"""The built-in demo corpus: layout, labels, determinism, size, and emotion that a model
can actually learn from its words and from its audio."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.requirements import need_module

from emofuse.cli import main
from emofuse.demo.corpus import (
    EMOTION_FOLDERS,
    SETTINGS_NAME,
    ensure_demo_corpus,
    make_demo_corpus,
)
from emofuse.demo.sentences import SENTENCES
from emofuse.demo.voice import PROSODY, make_speakers, syllables_of
from emofuse.labels import KOREAN_TO_ENGLISH

SIZE_BUDGET_BYTES = 8_000_000
SPEAKER_FOLDER = re.compile(r"^(\d{4})_(G[12]A\dE\dS\dC\d)_([A-Z]{3})$")


def _label_path(wav: Path) -> Path:
    return Path(str(wav).replace("원천데이터", "라벨링데이터")).with_suffix(".json")


def _wavs(root: Path) -> list[Path]:
    return sorted(root.glob("*/원천데이터/1.감정/*/*/*.wav"))


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The default demo corpus (7 emotions x 30 scripts x 4 speakers), made once."""
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus")


@pytest.fixture(scope="module")
def clips(corpus) -> list[dict]:
    """Every clip: path, part, emotion folder, speaker folder, JSON, header info."""
    out = []
    for wav in _wavs(corpus):
        rel = wav.relative_to(corpus).parts
        out.append(
            {
                "wav": wav,
                "part": rel[0],
                "folder": rel[3],
                "speaker": rel[4],
                "meta": json.loads(_label_path(wav).read_text(encoding="utf-8")),
                "info": sf.info(str(wav)),
            }
        )
    return out


# --- the sentences -----------------------------------------------------------------------


def test_sentences_are_many_distinct_korean_and_cover_every_emotion():
    assert set(SENTENCES) == set(EMOTION_FOLDERS) == set(PROSODY) == set(KOREAN_TO_ENGLISH)
    every = [s for sentences in SENTENCES.values() for s in sentences]
    assert len(every) == len(set(every)), "a sentence appears twice"
    for emotion, sentences in SENTENCES.items():
        assert len(sentences) >= 30, emotion
        for s in sentences:
            assert 6 <= len(syllables_of(s)) <= 20, s
            assert re.fullmatch(r"[가-힣 ,.!?]+", s), f"unexpected character in {s!r}"


def test_text_alone_predicts_the_emotion_of_unseen_sentences():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    texts = [s for sentences in SENTENCES.values() for s in sentences]
    labels = [e for e, sentences in SENTENCES.items() for _ in sentences]
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
        LinearSVC(),
    )
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    predicted = cross_val_predict(model, texts, labels, cv=folds)
    uar = balanced_accuracy_score(labels, predicted)
    assert uar > 0.5, f"text UAR {uar:.2f} on held-out sentences (chance 0.14)"


# --- layout, labels, determinism, size ---------------------------------------------------


def test_layout_counts_and_validation_speaker(corpus, clips):
    assert (corpus / "README.txt").read_text(encoding="utf-8").startswith("emofuse demo corpus")
    assert len(clips) == 7 * 30 * 4
    for part in ("Training", "Validation"):
        folders = sorted(p.name for p in (corpus / part / "원천데이터" / "1.감정").iterdir())
        assert folders == [f"{i}.{e}" for i, e in enumerate(EMOTION_FOLDERS, start=1)]
    speakers = {part: {c["speaker"] for c in clips if c["part"] == part} for part in
                ("Training", "Validation")}  # fmt: skip
    assert len(speakers["Training"]) == 3 and len(speakers["Validation"]) == 1
    assert max(speakers["Training"]) < min(speakers["Validation"])  # the last speaker
    for c in clips:
        assert SPEAKER_FOLDER.match(c["speaker"]), c["speaker"]
        assert re.fullmatch(re.escape(c["speaker"]) + r"_\d{6}", c["wav"].stem), c["wav"]
    per_cell = {}
    for c in clips:
        key = (c["folder"], c["speaker"])
        per_cell[key] = per_cell.get(key, 0) + 1
    assert len(per_cell) == 7 * 4 and set(per_cell.values()) == {30}
    labels = {_label_path(c["wav"]) for c in clips}
    assert labels == set(corpus.glob("*/라벨링데이터/1.감정/*/*/*.json"))


def test_labels_agree_with_folders_speakers_and_headers(clips):
    speakers = {s.folder: s for s in make_speakers(4, seed=0)}
    for c in clips:
        meta, info = c["meta"], c["info"]
        assert meta["파일정보"]["FileName"] == c["wav"].name
        assert meta["파일정보"]["SampleRate"] == info.samplerate == 16_000
        assert meta["파일정보"]["Duration"] == pytest.approx(info.duration, abs=1e-3)
        assert info.channels == 1
        assert c["folder"].split(".", 1)[1] == meta["화자정보"]["Emotion"]
        text = meta["전사정보"]["OrgLabelText"]
        assert text == meta["전사정보"]["TransLabelText"]
        assert text in SENTENCES[meta["화자정보"]["Emotion"]]
        speaker = speakers[c["speaker"]]
        assert meta["화자정보"]["SpeakerName"] == speaker.initials == c["speaker"][-3:]
        assert meta["화자정보"]["Gender"] == speaker.gender
        assert meta["화자정보"]["Style"] == c["speaker"].split("_")[1]
    assert {s.gender for s in speakers.values()} == {"F", "M"}


def test_every_speaker_reads_every_script_and_script_numbers_name_sentences(clips):
    by_script: dict[str, set[str]] = {}
    readers: dict[str, set[str]] = {}
    for c in clips:
        script = c["wav"].stem.rsplit("_", 1)[1]
        by_script.setdefault(script, set()).add(c["meta"]["전사정보"]["OrgLabelText"])
        readers.setdefault(script, set()).add(c["speaker"])
    assert len(by_script) == 7 * 30
    assert all(len(texts) == 1 for texts in by_script.values())
    assert len({next(iter(t)) for t in by_script.values()}) == 7 * 30  # one number per text
    assert all(len(r) == 4 for r in readers.values())


def test_audio_is_readable_in_range_and_corpus_within_budget(corpus, clips):
    durations = np.array([c["info"].duration for c in clips])
    assert durations.min() >= 0.4 and durations.max() <= 2.5, (durations.min(), durations.max())
    assert 0.7 <= durations.mean() <= 1.3
    x, sr = sf.read(str(clips[0]["wav"]), dtype="float32")
    assert sr == 16_000 and len(x) == clips[0]["info"].frames
    assert np.isfinite(x).all() and 0.001 < np.sqrt(np.mean(x**2)) < 0.5
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    assert size <= SIZE_BUDGET_BYTES, f"demo corpus is {size / 1e6:.1f} MB"


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path):
    small = {"speakers": 2, "scripts_per_emotion": 2}
    a = _hashes(make_demo_corpus(tmp_path / "a", seed=3, **small))
    b = _hashes(make_demo_corpus(tmp_path / "b", seed=3, **small))
    c = _hashes(make_demo_corpus(tmp_path / "c", seed=4, **small))
    assert len(a) == 2 * 7 * 2 * 2 + 2 and a == b  # clips x (wav + json), README, settings
    wav_a = {k: v for k, v in a.items() if k.endswith(".wav")}
    wav_c = {k: v for k, v in c.items() if k.endswith(".wav")}
    if set(wav_a) == set(wav_c):  # same speaker names by chance: compare the audio
        assert all(wav_a[k] != wav_c[k] for k in wav_a)
    else:
        assert set(wav_a) != set(wav_c)


def test_no_validation_part_when_no_speaker_is_held_out(tmp_path):
    out = make_demo_corpus(tmp_path / "d", speakers=1, scripts_per_emotion=1, validation_speakers=0)
    assert not (out / "Validation").exists()
    assert len(_wavs(out)) == 7


def test_syllables_carry_their_pauses():
    sylls = syllables_of("안녕, 잘 가요?")
    assert len(sylls) == 5
    assert [s.pause_after for s in sylls] == [0, 2, 1, 0, 3]
    assert [s.has_final for s in sylls] == [True, True, True, False, False]
    assert sylls[2].noisy_onset and not sylls[0].noisy_onset  # 잘 (ㅈ) vs 안 (ㅇ)


def test_speakers_are_stable_when_more_are_asked_for():
    four, six = make_speakers(4, seed=7), make_speakers(6, seed=7)
    assert six[:4] == four
    assert len({s.initials for s in six}) == 6


# --- the emotion is in the audio ---------------------------------------------------------


def _prosodic_stats(x: np.ndarray, sr: int, n_syllables: int) -> list[float]:
    """Loudness, pitch (autocorrelation) and speaking rate: numpy only."""
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::160] * np.hanning(640)
    level_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    voiced = level_db > level_db.max() - 25
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames[voiced], 1280)) ** 2)[:, :640]
    lo, hi = sr // 400, sr // 60
    semitones = 12 * np.log2(sr / (lo + np.argmax(ac[:, lo:hi], axis=1)))
    slope = np.polyfit(np.arange(len(semitones)), semitones, 1)[0]
    return [
        level_db[voiced].mean(),
        level_db[voiced].std(),
        semitones.mean(),
        semitones.std(),
        slope,
        n_syllables / (len(x) / sr),
    ]


def _leave_one_speaker_out_uar(features, labels, groups) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    predicted = cross_val_predict(model, features, labels, groups=groups, cv=LeaveOneGroupOut())
    return balanced_accuracy_score(labels, predicted)


@pytest.fixture(scope="module")
def prosody(clips) -> tuple[np.ndarray, list[str], list[str]]:
    """(prosodic statistics, emotion folder, speaker) for every clip."""
    features, labels, groups = [], [], []
    for c in clips:
        x, sr = sf.read(str(c["wav"]), dtype="float64")
        text = c["meta"]["전사정보"]["OrgLabelText"]
        features.append(_prosodic_stats(x, sr, len(syllables_of(text))))
        labels.append(c["folder"].split(".", 1)[1])
        groups.append(c["speaker"])
    return np.array(features), labels, groups


def test_prosody_moves_the_way_each_emotion_is_described(prosody):
    features, labels, _ = prosody
    mean = {e: features[np.array(labels) == e].mean(axis=0) for e in EMOTION_FOLDERS}
    level, pitch, rate = 0, 2, 5
    assert mean["분노"][level] > mean["중립"][level] > mean["슬픔"][level]
    assert mean["불안"][pitch] > mean["중립"][pitch] > mean["슬픔"][pitch]
    assert mean["기쁨"][pitch] > mean["중립"][pitch]
    assert mean["분노"][rate] > mean["중립"][rate] > mean["슬픔"][rate]


def test_simple_prosody_separates_emotions_on_unseen_speakers(prosody):
    uar = _leave_one_speaker_out_uar(*prosody)
    # Chance is 1/7 = 0.14; the emotions overlap on purpose, so never perfect.
    assert 0.4 < uar < 0.95, f"prosody UAR {uar:.2f}"


@pytest.mark.slow
def test_egemaps_separates_emotions_on_unseen_speakers(clips):
    opensmile = need_module("opensmile")
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02)
    # Six scripts per emotion (168 clips) keep this to a few seconds.
    subset = [c for c in clips if int(c["wav"].stem[-2:]) <= 6]
    features = np.array([smile.process_file(str(c["wav"])).to_numpy()[0] for c in subset])
    uar = _leave_one_speaker_out_uar(
        features, [c["folder"] for c in subset], [c["speaker"] for c in subset]
    )
    assert 0.4 < uar < 0.99, f"eGeMAPS UAR {uar:.2f}"


# --- the reader, the command -------------------------------------------------------------


def test_the_dataset_466_reader_reads_it_whole(corpus):
    from emofuse.corpus import read_corpus

    result = read_corpus(corpus, progress=False, workers=1)
    assert len(result.problems) == 0, result.problems.head().to_string()
    table = result.table
    assert len(table) == 840 and table["script"].nunique() == 210
    assert sorted(table["label"].unique()) == sorted(KOREAN_TO_ENGLISH.values())
    held_out = table.loc[table["source_split"] == "validation", "speaker"].unique()
    assert len(held_out) == 1
    assert held_out[0] not in set(table.loc[table["source_split"] == "train", "speaker"])


def test_cli_writes_a_corpus_refuses_to_clobber_and_replaces_with_force(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo-data", str(out), "--speakers", "2", "--scripts-per-emotion", "1", "--quiet"]
    assert main(args) == 0
    assert "wrote 14 clips (7 Training, 7 Validation" in capsys.readouterr().out
    assert len(_wavs(out)) == 14

    assert main(args) == 2
    assert f"{out}: directory is not empty" in capsys.readouterr().err
    assert main([*args[:3], "3", *args[4:], "--force"]) == 0
    assert len(_wavs(out)) == 21

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["demo-data", str(other), "--force", "--quiet"]) == 2
    assert "not a demo corpus" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


def test_an_interrupted_corpus_is_incomplete_and_can_be_replaced(tmp_path, monkeypatch):
    import emofuse.demo.corpus as demo

    real, calls = demo.synthesize, []

    def breaks_on_the_third_clip(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo, "synthesize", breaks_on_the_third_clip)
    with pytest.raises(KeyboardInterrupt):
        make_demo_corpus(tmp_path / "d", speakers=1, scripts_per_emotion=1, validation_speakers=0)
    assert not (tmp_path / "d" / "README.txt").exists()  # never mistaken for a finished one
    assert len(_wavs(tmp_path / "d")) == 2
    monkeypatch.setattr(demo, "synthesize", real)
    with pytest.raises(FileExistsError, match="an earlier demo corpus"):
        make_demo_corpus(tmp_path / "d", speakers=1, scripts_per_emotion=1, validation_speakers=0)
    out = make_demo_corpus(
        tmp_path / "d", speakers=1, scripts_per_emotion=1, validation_speakers=0, overwrite=True
    )
    assert len(_wavs(out)) == 7 and (out / "README.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "Training", SETTINGS_NAME]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scripts_per_emotion": 41}, "scripts_per_emotion must be 1..40"),
        ({"scripts_per_emotion": 0}, "scripts_per_emotion must be 1..40"),
        ({"speakers": 0}, "speakers must be"),
        ({"speakers": 2, "validation_speakers": 2}, "validation_speakers must be 0..1"),
        ({"subtype": "MP3ISH"}, "unknown WAV subtype"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_demo_corpus(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_cli_reports_bad_arguments_in_one_line(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "x"), "--scripts-per-emotion", "99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emofuse demo-data: error:") and "\n" not in err


def test_ensure_demo_corpus_rebuilds_when_a_setting_changes(tmp_path):
    root = tmp_path / "corpus"
    small = {"speakers": 2, "scripts_per_emotion": 1, "seed": 0}
    assert ensure_demo_corpus(root, **small) is True
    first = _hashes(root)
    assert ensure_demo_corpus(root, **small) is False  # same settings: reused as it is
    assert _hashes(root) == first
    assert ensure_demo_corpus(root, **{**small, "speakers": 3}) is True
    assert len(_wavs(root)) == 7 * 3
    assert ensure_demo_corpus(root, **{**small, "speakers": 3, "scripts_per_emotion": 2}) is True
    assert len(_wavs(root)) == 7 * 3 * 2
    before = _hashes(root)
    assert ensure_demo_corpus(root, **{**small, "speakers": 3, "scripts_per_emotion": 2, "seed": 1})
    assert _hashes(root) != before and len(_wavs(root)) == 7 * 3 * 2


@pytest.mark.slow
def test_the_demo_walkthrough_follows_changed_corpus_settings(tmp_path):
    """`emofuse demo` with other --speakers / --scripts-per-emotion / --seed must not
    reuse the corpus of an earlier run (toy encoders keep it fast)."""
    import pandas as pd
    import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-chars

    from emofuse.demo.walkthrough import run_walkthrough
    from emofuse.head.config import TrainConfig

    def corpus_after(**settings) -> pd.DataFrame:
        run_walkthrough(
            tmp_path, speech="toy-stats", text="toy-chars", config=TrainConfig(epochs=1),
            workers=1, progress=False, say=lambda _: None, **settings,
        )  # fmt: skip
        return pd.read_parquet(tmp_path / "corpus.parquet")

    first = corpus_after(speakers=2, scripts_per_emotion=2)
    assert first["speaker"].nunique() == 2 and len(first) == 7 * 2 * 2
    more = corpus_after(speakers=3, scripts_per_emotion=3)
    assert more["speaker"].nunique() == 3 and len(more) == 7 * 3 * 3
    reseeded = corpus_after(speakers=3, scripts_per_emotion=3, seed=5)
    assert set(reseeded["speaker"]) != set(more["speaker"])  # the seed names the speakers


def test_demo_says_what_its_score_means(tmp_path, capsys):
    """Under the results table: three lines that the corpus is synthetic, the score an
    upper bound, and where the README's real-speech figures are."""
    import support.toy_encoders as toy_encoders  # noqa: F401 - registers toy-stats / toy-chars

    argv = ["demo", "-o", str(tmp_path), "--speakers", "2", "--scripts-per-emotion", "2",
            "--speech", "toy-stats", "--text", "toy-chars", "--workers", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out[out.index("| both |") :].split("\n\n")[1].splitlines()
    assert len(lines) == 3, lines
    context = " ".join(lines)
    for words in ("2 synthetic voices", "not speech", "scripted sentences", "upper bound",
                  "smoke test", "README's held-out figures", "EmoDB, leave-one-speaker-out"):  # fmt: skip
        assert words in context
    assert context in (tmp_path / "results.md").read_text(encoding="utf-8")
    # The README section it points at holds EmoDB's held-out (leave-one-speaker-out) UAR.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Offline defaults", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"EmoDB \(leave-one-speaker-out.*\) .*UAR 0\.\d\d", section, re.S)
