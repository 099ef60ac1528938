"""The feature store in-process: compute once, part by part, failures, fitting, float16."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.requirements import need_module
from support.toy_encoders import ToyChars, ToyStats, encoded_items, make_corpus

from emofuse.audio import load_audio
from emofuse.encoders import ConcatEncoder, Encoder, build_encoder
from emofuse.features import (
    FeatureStore,
    FeatureStoreError,
    MissingFeaturesError,
    clean_text,
    extract_features,
    text_key,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def corpus(tmp_path: Path) -> pd.DataFrame:
    return make_corpus(tmp_path / "corpus", n=12)


@pytest.fixture()
def encode_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "encode.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    return log


def _direct(encoder, table: pd.DataFrame) -> np.ndarray:
    waves = [load_audio(p, encoder.sample_rate_hz) for p in table["audio"]]
    return encoder.encode(waves)


def test_vectors_in_table_order_and_second_run_computes_nothing(tmp_path, corpus, encode_log):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats", "speech")
    first = store.ensure(corpus, encoder, batch_size=3, shard_size=5, progress=False)
    assert (first.computed, first.cached, first.failed) == (12, 0, [])
    assert encoded_items(encode_log) == 12
    shards = sorted((store.part_dir(encoder).shards_dir).glob("shard-r0-*.npz"))
    assert len(shards) == 3  # 5 + 5 + 2

    shuffled = corpus.sample(frac=1.0, random_state=1).reset_index(drop=True)
    got = store.get(shuffled, encoder)
    assert got.dtype == np.float32 and got.shape == (12, 5)
    np.testing.assert_allclose(got, _direct(encoder, shuffled), rtol=1e-6)

    calls_before = encoded_items(encode_log)
    second = store.ensure(corpus, encoder, progress=False)
    assert (second.computed, second.cached) == (0, 12)
    assert encoded_items(encode_log) == calls_before  # no encode() call at all
    assert store.available(shuffled, encoder).all()


def test_layout_is_readable_and_records_the_encoder(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats?scale=2", "speech")
    store.ensure(corpus, encoder, progress=False)
    directory = store.part_dir(encoder).path
    assert directory.parent == tmp_path / "store" / "speech"
    assert directory.name == f"toy-stats_scale_2-{encoder.fingerprint()}"
    meta = json.loads((directory / "encoder.json").read_text())
    assert meta["spec"] == "toy-stats?scale=2" and meta["dim"] == 5
    assert meta["config"] == {"scale": 2.0, "fail_above_s": None}
    assert meta["dtype"] == "float32" and meta["key"] == "utterance id"


def test_changed_setting_is_a_new_directory_never_a_silent_reuse(tmp_path, corpus, encode_log):
    store = FeatureStore(tmp_path / "store")
    plain, doubled = (
        build_encoder("toy-stats", "speech"),
        build_encoder("toy-stats?scale=2", "speech"),
    )
    store.ensure(corpus, plain, progress=False)
    report = store.ensure(corpus, doubled, progress=False)
    assert report.computed == 12 and report.cached == 0
    assert store.part_dir(plain).path != store.part_dir(doubled).path
    np.testing.assert_allclose(store.get(corpus, doubled), 2 * store.get(corpus, plain), rtol=1e-6)


def test_encoder_json_mismatch_is_an_error(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats", "speech")
    store.ensure(corpus, encoder, progress=False)
    meta_path = store.part_dir(encoder).meta_path
    meta = json.loads(meta_path.read_text())
    meta["config"]["scale"] = 3.0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FeatureStoreError, match=r"encoder.json.*config"):
        store.ensure(corpus, encoder, progress=False)
    with pytest.raises(FeatureStoreError, match="other vectors"):
        store.get(corpus, encoder)


def test_concatenation_is_stored_part_by_part(tmp_path, corpus, encode_log):
    store = FeatureStore(tmp_path / "store")
    plain = build_encoder("toy-stats", "speech")
    store.ensure(corpus, plain, progress=False)
    both = build_encoder("toy-stats+toy-stats?scale=3", "speech")
    assert isinstance(both, ConcatEncoder)
    report = store.ensure(corpus, both, progress=False)
    assert [(p.computed, p.cached) for p in report.parts] == [(0, 12), (12, 0)]
    assert encoded_items(encode_log) == 24  # 12 for plain, 12 for the new part only
    got = store.get(corpus, both)
    assert got.shape == (12, 10)
    np.testing.assert_allclose(got[:, 5:], 3 * got[:, :5], rtol=1e-6)


def test_text_is_keyed_by_cleaned_text_and_encoded_once(tmp_path, encode_log):
    # 40 speakers read the same script (only white space differs), plus one other line.
    rows = [
        {"id": f"s{i:02d}", "text": ("오늘 정말  좋아요!" if i % 2 else " 오늘 정말 좋아요!")}
        for i in range(40)
    ]
    rows.append({"id": "other", "text": "왜 그랬어요?"})
    table = pd.DataFrame(rows)
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-len", "text")
    report = store.ensure(table, encoder, progress=False)
    assert report.computed == 2 and encoded_items(encode_log) == 2
    assert text_key("오늘 정말  좋아요!") == text_key(" 오늘 정말 좋아요!")
    got = store.get(table, encoder)
    assert (got[:40] == got[0]).all() and not (got[40] == got[0]).all()
    # The encoder saw the cleaned text, punctuation intact.
    np.testing.assert_array_equal(got[0], [len("오늘 정말 좋아요!"), 3, 1])
    np.testing.assert_array_equal(got[40], [len("왜 그랬어요?"), 2, 1])


class LastChar(Encoder):
    """Text: length and the code point of the last character ("!" and "?" differ)."""

    modality = "text"
    name = "last-char"
    spec = "last-char"
    dim = 2

    def config(self) -> dict:
        return {}

    def encode(self, batch):
        return np.asarray([[len(t), ord(t[-1]) if t else 0] for t in batch], dtype=np.float32)


def test_texts_differing_in_end_punctuation_get_their_own_vectors(tmp_path):
    # "!" and "?" carry emotion: the encoder sees them, so the key must tell them apart.
    table = pd.DataFrame(
        {"id": ["a", "b", "c"], "text": ["정말 좋아요!", "정말 좋아요?", "정말 좋아요."]}
    )
    store = FeatureStore(tmp_path / "store")
    encoder = LastChar()
    assert store.ensure(table, encoder, progress=False).computed == 3
    got = store.get(table, encoder)
    expected = encoder.encode([clean_text(t) for t in table["text"]])
    np.testing.assert_array_equal(got, expected)
    assert len({tuple(row) for row in got}) == 3
    assert len({text_key(t) for t in table["text"]}) == 3


def test_a_text_vector_does_not_depend_on_what_the_store_saw_first(tmp_path):
    # Whichever variant is extracted first, each row reads the vector of its own text.
    first = pd.DataFrame({"id": ["a"], "text": ["정말 좋아요!"]})
    later = pd.DataFrame({"id": ["b"], "text": ["정말 좋아요?"]})
    encoder = LastChar()
    one, two = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")
    one.ensure(first, encoder, progress=False)
    assert one.ensure(later, encoder, progress=False).computed == 1
    two.ensure(later, encoder, progress=False)
    np.testing.assert_array_equal(one.get(later, encoder), two.get(later, encoder))
    np.testing.assert_array_equal(one.get(later, encoder), encoder.encode(["정말 좋아요?"]))


def test_bad_audio_is_recorded_rest_computed_and_get_names_it(tmp_path, corpus, encode_log):
    bad = Path(corpus.loc[3, "audio"])
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    corpus.loc[7, "audio"] = str(tmp_path / "nowhere.wav")
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats", "speech")
    report = store.ensure(corpus, encoder, batch_size=4, progress=False)
    assert report.computed == 10
    failed = {f.key: f for f in report.failed}
    assert set(failed) == {"u003", "u007"}
    assert failed["u003"].file == str(bad) and "unreadable audio" in failed["u003"].reason
    assert "no such file" in failed["u007"].reason

    mask = store.available(corpus, encoder)
    assert mask.sum() == 10 and not mask[3] and not mask[7]
    assert store.get(corpus[mask], encoder).shape == (10, 5)
    with pytest.raises(MissingFeaturesError, match=r"missing for 2 of 12.*u003.*unreadable audio"):
        store.get(corpus, encoder)

    again = store.ensure(corpus, encoder, progress=False)
    assert again.computed == 0 and again.parts[0].skipped_failed == 2
    assert encoded_items(encode_log) == 10  # failures are not retried unless asked

    shutil.copy(corpus.loc[4, "audio"], bad)  # repair one file
    retried = store.ensure(corpus, encoder, progress=False, retry_failed=True)
    assert retried.computed == 1 and [f.key for f in retried.failed] == ["u007"]
    assert store.available(corpus, encoder).sum() == 11


def test_an_overlong_clip_is_refused_from_its_header_not_read(tmp_path, corpus, monkeypatch):
    import soundfile as sf

    from emofuse import audio_checks

    longest = corpus["duration_s"].idxmax()
    # The one length setting every path reads (emofuse.audio_checks.MAX_CLIP_S).
    monkeypatch.setattr(audio_checks, "MAX_CLIP_S", float(corpus["duration_s"].max()) - 0.01)
    decoded: list[str] = []
    read = sf.SoundFile.read

    def counting_read(self, *args, **kwargs):
        decoded.append(str(self.name))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    store = FeatureStore(tmp_path / "store")
    report = store.ensure(corpus, build_encoder("toy-stats", "speech"), progress=False)
    assert [f.key for f in report.failed] == [corpus.loc[longest, "id"]]
    assert "too long" in report.failed[0].reason and report.computed == len(corpus) - 1
    assert corpus.loc[longest, "audio"] not in decoded and len(decoded) == len(corpus) - 1


def test_an_encoder_error_on_one_item_is_isolated(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats?fail_above_s=0.42", "speech")
    report = store.ensure(corpus, encoder, batch_size=4, progress=False)
    long_ids = set(corpus.loc[corpus["duration_s"] > 0.42, "id"])
    assert long_ids and {f.key for f in report.failed} == long_ids
    assert all("encoder error: ValueError" in f.reason for f in report.failed)
    assert report.computed == 12 - len(long_ids)


def test_missing_message_lists_first_ids_and_count(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats", "speech")
    store.ensure(corpus.iloc[:2], encoder, progress=False)
    with pytest.raises(MissingFeaturesError) as info:
        store.get(corpus, encoder)
    message = str(info.value)
    assert "missing for 10 of 12" in message and "u002, u003" in message and "and 5 more" in message


def test_float16_is_a_separate_store_key(tmp_path, corpus):
    encoder = build_encoder("toy-stats", "speech")
    half = FeatureStore(tmp_path / "store", float16=True)
    half.ensure(corpus, encoder, progress=False)
    directory = half.part_dir(encoder).path
    assert directory.name.endswith("-f16")
    assert json.loads((directory / "encoder.json").read_text())["dtype"] == "float16"
    with np.load(next((directory / "shards").glob("*.npz"))) as npz:
        assert npz["vectors"].dtype == np.float16
    got = half.get(corpus, encoder)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _direct(encoder, corpus), rtol=2e-3, atol=1e-4)
    with pytest.raises(MissingFeaturesError, match="nothing extracted"):
        FeatureStore(tmp_path / "store").get(corpus, encoder)


def test_stray_temp_files_ignored_and_a_damaged_shard_is_named(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoder = build_encoder("toy-stats", "speech")
    store.ensure(corpus, encoder, shard_size=6, progress=False)
    shards = store.part_dir(encoder).shards_dir
    (shards / ".shard-r0-000009.npz.999.tmp").write_bytes(b"half a shard")
    assert store.available(corpus, encoder).all()

    # A deleted shard: its keys are missing (the index follows the shards) and recomputed.
    victim = sorted(shards.glob("shard-*.npz"))[0]
    victim.unlink()
    assert store.available(corpus, encoder).sum() == 6
    assert store.ensure(corpus, encoder, progress=False).computed == 6

    damaged = sorted(shards.glob("shard-*.npz"))[0]
    damaged.write_bytes(b"not a zip")
    with pytest.raises(FeatureStoreError, match=damaged.name):
        store.get(corpus, encoder)


def test_fitted_text_encoder_fits_once_on_training_rows_and_reloads(tmp_path, corpus, encode_log):
    store = FeatureStore(tmp_path / "store")
    train = corpus[corpus["part"] == "train"].copy()
    train["text"] = train["text"].str.replace("?", "")  # '?' only outside training text
    encoders = extract_features(
        corpus, store=store, text="toy-chars", fit_table=train, progress=False
    )
    fitted = encoders["text"]
    assert "?" not in fitted.vocab
    state = store.state_dir(fitted)
    assert json.loads((state / "vocab.json").read_text()) == fitted.vocab
    assert store.get(corpus, fitted).shape == (12, fitted.dim)

    again = ToyChars()
    extract_features(corpus, store=store, text=again, fit_table=train, progress=False)
    assert again.fit_calls == 0 and again.vocab == fitted.vocab  # reloaded, not refitted

    assert again.fingerprint() == fitted.fingerprint()
    np.testing.assert_array_equal(store.get(corpus, again), store.get(corpus, fitted))

    with pytest.raises(FeatureStoreError, match="must be fitted"):
        extract_features(corpus, store=store, text="toy-chars", progress=False)
    with pytest.raises(FeatureStoreError, match="must be fitted"):
        store.ensure(corpus, ToyChars(), progress=False)


class LabelCounts(Encoder):
    """Text, fitted with labels: per training label, how many of its texts share a word."""

    modality = "text"
    name = "label-counts"
    spec = "label-counts"
    needs_fit = True
    needs_labels = True

    def __init__(self):
        self.words: dict[str, list[str]] | None = None

    @property
    def dim(self) -> int:
        return len(self.words or {})

    @property
    def is_fitted(self) -> bool:
        return self.words is not None

    def config(self) -> dict:
        return {}

    def state_fingerprint(self) -> str:
        return json.dumps(self.words, sort_keys=True) if self.words else ""

    def fit(self, texts, labels=None):
        assert labels is not None and len(labels) == len(texts)
        self.words = {}
        for text, label in sorted(zip(texts, labels, strict=True)):
            self.words.setdefault(label, []).extend(text.split())

    def encode(self, batch):
        return np.asarray(
            [
                [sum(w in self.words[k] for w in t.split()) for k in sorted(self.words)]
                for t in batch
            ],
            dtype=np.float32,
        )

    def save_state(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "words.json").write_text(json.dumps(self.words))

    def load_state(self, directory):
        self.words = json.loads((Path(directory) / "words.json").read_text())


def test_an_encoder_that_needs_labels_is_fitted_on_the_training_labels(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    train = corpus[corpus["part"] == "train"]
    encoders = extract_features(
        corpus, store=store, text=LabelCounts(), fit_table=train, progress=False
    )
    fitted = encoders["text"]
    assert sorted(fitted.words) == sorted(train["label"].unique())
    np.testing.assert_array_equal(
        store.get(corpus, fitted), fitted.encode([clean_text(t) for t in corpus["text"]])
    )
    with pytest.raises(FeatureStoreError, match="label"):
        extract_features(
            corpus,
            store=store,
            text=LabelCounts(),
            fit_table=train.drop(columns=["label"]),
            progress=False,
        )


def test_a_fitted_encoder_learns_from_the_text_it_will_be_given(tmp_path):
    # Decomposed Hangul (NFD, as some file systems and tools write it) is cleaned to NFC
    # before fitting, exactly as before encoding: the vocabulary is syllables, not jamo.
    import unicodedata

    nfd = [unicodedata.normalize("NFD", t) for t in ("기뻐요", "슬퍼요", "기뻐요")]
    table = pd.DataFrame({"id": ["a", "b", "c"], "text": nfd, "part": "train"})
    encoders = extract_features(
        table, store=FeatureStore(tmp_path / "store"), text=ToyChars(), fit_table=table,
        progress=False,
    )  # fmt: skip
    assert encoders["text"].vocab == sorted(set("기뻐요슬퍼요"))


def test_two_workers_give_the_same_vectors(tmp_path, corpus):
    encoder = build_encoder("toy-stats", "speech")
    one, two = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")
    one.ensure(corpus, encoder, progress=False)
    report = two.ensure(corpus, encoder, batch_size=2, progress=False, workers=2)
    assert report.computed == 12
    np.testing.assert_array_equal(two.get(corpus, encoder), one.get(corpus, encoder))


def test_workers_rebuild_a_fitted_encoder_from_its_saved_state(tmp_path, corpus):
    store = FeatureStore(tmp_path / "store")
    encoders = extract_features(
        corpus, store=store, text="toy-chars", fit_table=corpus, progress=False, workers=2
    )
    fitted = encoders["text"]
    expected = fitted.encode([clean_text(t) for t in corpus["text"]])
    np.testing.assert_array_equal(store.get(corpus, fitted), expected)


def test_toy_encoder_matches_a_hand_computation():
    wave = np.array([0.5, -0.5, 0.5, -0.5], dtype=np.float32)
    got = ToyStats().encode([wave])[0]
    np.testing.assert_allclose(got, [0.0, 0.5, 0.5, 4 / 16000, 3 / 4], rtol=1e-6)


@pytest.mark.slow
def test_cli_extract_with_real_offline_encoders_on_emodb(tmp_path, emodb_dir):
    need_module("emofuse.encoders.egemaps")
    need_module("emofuse.encoders.kiwi_tfidf")
    manifest = pd.read_csv(emodb_dir / "manifest.csv").iloc[:6]
    table = pd.DataFrame(
        {
            "id": [Path(a).stem for a in manifest["audio"]],
            "audio": [str(emodb_dir / a) for a in manifest["audio"]],
            "text": manifest["text"],
            "label": manifest["label"],
            "speaker": manifest["speaker"],
            "script": manifest["text"],
            "duration_s": 1.0,
            "source_split": "",
            "part": ["train"] * 4 + ["test"] * 2,
        }
    )
    from emofuse.corpus.table import write_table

    write_table(table, tmp_path / "corpus.csv")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "emofuse",
        "extract",
        str(tmp_path / "corpus.csv"),
        "--speech",
        "egemaps",
        "--text",
        "kiwi-tfidf",
        "--store",
        str(tmp_path / "store"),
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "speech egemaps: 6 computed" in done.stdout
    store = FeatureStore(tmp_path / "store")
    speech = build_encoder("egemaps", "speech")
    assert store.get(table, speech).shape == (6, 88)
    fitted = extract_features(
        table, store=store, text="kiwi-tfidf", fit_table=table.iloc[:4], progress=False
    )
    text = fitted["text"]  # the state the command saved, reloaded: nothing is refitted
    vectors = store.get(table, text)
    assert vectors.shape == (6, text.dim) and np.isfinite(vectors).all()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert "speech egemaps: 0 computed, 6 cached" in rerun.stdout, rerun.stdout + rerun.stderr


def test_failure_log_survives_a_line_torn_inside_a_korean_character(tmp_path):
    from emofuse.features.io import Failure, PartDir

    pdir = PartDir(tmp_path / "part", {"spec": "toy"})
    pdir.record_failures(0, [Failure("k1", ("u1",), "/data/기쁨/a.wav", "bad")])
    log = pdir.failures_dir / "failures-r0.jsonl"
    torn = '{"key": "k2", "file": "/data/슬픔'.encode()[:-1]  # cut inside 픔
    log.write_bytes(log.read_bytes() + torn)
    pdir.record_failures(0, [Failure("k3", ("u3",), "/data/분노/c.wav", "worse")])
    found = pdir.failures()
    assert sorted(found) == ["k1", "k3"]
    assert found["k3"].file == "/data/분노/c.wav" and found["k3"].reason == "worse"
