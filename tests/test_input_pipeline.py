"""The input pipeline beside the model (emofuse.features.loading, .batching and
emofuse.encoders.hf_inputs): the same vectors as the feature extractor's own arithmetic,
with 0 or 2 loader processes; batches within the seconds budget; and the precision rule
of the vectors' key (autocast vectors apart, float32 ones where they always were)."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from support.requirements import need_module
from support.tiny_models import (
    KOREAN_SENTENCES,
    make_tiny_kobert_like,
    make_tiny_text_model,
    make_tiny_wav2vec2,
)

from emofuse.encoders import build_encoder
from emofuse.encoders.base import Encoder, stable_hash
from emofuse.features import FeatureStore, extract_features
from emofuse.features.batching import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_MAX_ITEMS,
    DEVICE_MAX_ITEMS,
    BatchLimits,
    batch_limits,
    length_batches,
)

torch = need_module("torch")
transformers = need_module("transformers")

SR = 16_000


def _wave(seconds: float, seed: int, rate: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (110 + 30 * seed) * t) + 0.02 * seed
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "masked": make_tiny_wav2vec2(root / "masked", attention_mask=True),
        "unmasked": make_tiny_wav2vec2(root / "unmasked", attention_mask=False),
        "electra": make_tiny_text_model(root / "electra", kind="electra"),
        "kobert": make_tiny_kobert_like(root / "kobert"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pd.DataFrame:
    """14 clips of 0.3-2.4 s (some at 22.05 kHz, one stereo, one silent), one broken file."""
    root = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(14):
        rate = 22_050 if i % 4 == 0 else SR
        wave = _wave(0.3 + 0.15 * i, i, rate)
        if i == 5:
            wave = np.stack([wave, 0.5 * wave], axis=1)  # stereo: mixed down
        if i == 9:
            wave = np.zeros_like(wave)
        path = root / f"c{i:02d}.wav"
        sf.write(path, wave, rate)
        rows.append({"id": f"u{i:02d}", "audio": str(path), "duration_s": len(wave) / rate,
                     "text": KOREAN_SENTENCES[i % len(KOREAN_SENTENCES)] + "!" * (i // 10)})  # fmt: skip
    (root / "broken.wav").write_bytes(b"RIFF not really audio")
    rows.append({"id": "broken", "audio": str(root / "broken.wav"), "duration_s": 1.0,
                 "text": "망가진 파일"})  # fmt: skip
    return pd.DataFrame(rows)


# ---- the same vectors ------------------------------------------------------------------


def test_device_normalisation_is_the_feature_extractors(models):
    """normalise_waves repeats Wav2Vec2FeatureExtractor's per-clip normalisation (over each
    clip's own samples, the padding left at zero)."""
    from emofuse.encoders.hf_inputs import SpeechInputPlan, normalise_waves

    extractor = transformers.AutoFeatureExtractor.from_pretrained(models["masked"])
    waves = [_wave(0.2, 0), _wave(1.1, 1) * 3 + 0.2, _wave(0.6, 2) * 1e-3]
    reference = extractor(waves, sampling_rate=SR, padding=True, return_attention_mask=True,
                          return_tensors="pt")["input_values"]  # fmt: skip
    batch = SpeechInputPlan(SR, min_samples=400, window_samples=30 * SR, long="chunk")(waves)
    ours = normalise_waves(batch.values, batch.lengths)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)
    assert not ours[0, waves[0].size :].any()


def _reference_vectors(directory: Path, waves: list[np.ndarray], masked: bool) -> np.ndarray:
    """Today's recipe, written out: the feature extractor on the CPU, one padded batch
    with the mask (masked models) or each clip alone (no mask), mean over valid frames."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory).eval()
    groups = [list(range(len(waves)))] if masked else [[i] for i in range(len(waves))]
    out = np.zeros((len(waves), model.config.hidden_size), dtype=np.float32)
    for group in groups:
        inputs = extractor([waves[i] for i in group], sampling_rate=SR, padding=True,
                           return_attention_mask=True, return_tensors="pt")  # fmt: skip
        lengths = torch.tensor([waves[i].size for i in group])
        with torch.no_grad():
            kwargs = {"attention_mask": inputs["attention_mask"]} if masked else {}
            hidden = model(inputs["input_values"], **kwargs).last_hidden_state
        frames = model._get_feat_extract_output_lengths(lengths)
        for row, i in enumerate(group):
            out[i] = hidden[row, : int(frames[row])].mean(0).numpy()
    return out


@pytest.mark.parametrize("kind", ["masked", "unmasked"])
def test_float32_vectors_equal_todays_batched_and_alone(models, kind):
    directory = models[kind]
    waves = [_wave(s, i) for i, s in enumerate((0.4, 1.3, 0.4, 0.75, 1.0))]
    encoder = build_encoder(f"{directory}?device=cpu", "speech")
    batched = encoder.encode(waves)
    np.testing.assert_allclose(batched, _reference_vectors(directory, waves, kind == "masked"),
                               atol=1e-5)  # fmt: skip
    for row, wave in zip(batched, waves, strict=True):
        np.testing.assert_allclose(row, encoder.encode([wave])[0], atol=1e-5)


def _extract(table, spec, modality, store_dir, **options) -> tuple[np.ndarray, FeatureStore]:
    store = FeatureStore(store_dir)
    encoder = build_encoder(spec, modality)
    report = store.ensure(table, encoder, progress=False, **options)
    ok = store.available(table, encoder)
    return store.get(table[ok], encoder), report


@pytest.mark.parametrize("kind", ["masked", "unmasked"])
def test_loader_processes_give_the_same_speech_vectors(models, corpus, tmp_path, kind):
    """0 loader processes (a reading thread) and 2 give the same vectors, each equal to
    the clip encoded alone from its file; the broken file is a failure either way."""
    from emofuse.audio import load_audio

    spec = f"{models[kind]}?device=cpu"
    alone, report = _extract(corpus, spec, "speech", tmp_path / "a", loader_workers=0)
    two, report_two = _extract(corpus, spec, "speech", tmp_path / "b", loader_workers=2,
                               batch_seconds=3.0)  # fmt: skip
    np.testing.assert_allclose(alone, two, atol=1e-5)  # other batches: other padding
    for r in (report, report_two):
        assert r.item_counts() == {"items": 15, "computed": 14, "cached": 0, "failed": 1}
        assert r.failed[0].key == "broken" and "broken.wav" in r.failed[0].file
    encoder = build_encoder(spec, "speech")
    for i in (0, 5, 9, 13):
        wave = load_audio(corpus["audio"][i], SR)
        np.testing.assert_allclose(alone[i], encoder.encode([wave])[0], atol=1e-5)
    assert not np.allclose(alone[9], alone[10])  # silence has its own vector


def test_loader_processes_are_exact_for_the_same_batches(models, corpus, tmp_path):
    spec = f"{models['masked']}?device=cpu"
    zero, _ = _extract(corpus, spec, "speech", tmp_path / "a", loader_workers=0)
    two, _ = _extract(corpus, spec, "speech", tmp_path / "b", loader_workers=2)
    np.testing.assert_array_equal(zero, two)


@pytest.mark.parametrize("model", ["electra", "kobert"])
def test_text_tokenised_in_loader_processes(models, corpus, tmp_path, model):
    spec = f"{models[model]}?pooling=mean&device=cpu"
    zero, _ = _extract(corpus, spec, "text", tmp_path / "a", loader_workers=0, batch_size=3)
    two, _ = _extract(corpus, spec, "text", tmp_path / "b", loader_workers=2, batch_size=3)
    np.testing.assert_allclose(zero, two, atol=1e-5)
    texts = corpus["text"].tolist()
    expected = build_encoder(spec, "text").encode([texts[0]])[0]
    np.testing.assert_allclose(zero[0], expected, atol=1e-5)


def test_text_plan_pickles(models):
    """Loader processes started by spawn (macOS, Python 3.14) receive the plan pickled."""
    for name in ("electra", "kobert"):
        plan = build_encoder(str(models[name]), "text").input_plan()
        again = pickle.loads(pickle.dumps(plan))
        texts = list(KOREAN_SENTENCES[:3])
        for key, value in plan(texts).items():
            assert torch.equal(again(texts)[key], value), (name, key)


# ---- batches by seconds ------------------------------------------------------------------


def _items(durations: list[float]) -> pd.DataFrame:
    keys = [f"k{i:03d}" for i in range(len(durations))]
    return pd.DataFrame({"key": keys, "payload": keys, "length": durations,
                         "ids": [(k,) for k in keys]})  # fmt: skip


def test_batches_stay_within_the_seconds_budget():
    rng = np.random.default_rng(1)
    durations = list(rng.uniform(1.5, 8.0, 300)) + [25.0, 0.0]
    batches = length_batches(_items(durations), BatchLimits(max_items=20, max_seconds=40.0))
    length = dict(zip(_items(durations)["key"], durations, strict=True))
    seen = [key for batch in batches for key, _, _ in batch]
    assert sorted(seen) == sorted(length)  # every item once
    for batch in batches:
        seconds = [length[key] for key, _, _ in batch]
        assert len(batch) <= 20
        assert len(batch) == 1 or len(batch) * max(seconds) <= 40.0
    longest = f"k{len(durations) - 2:03d}"  # 25 s, over the budget: a batch of its own
    assert [[k for k, _, _ in b] for b in batches if any(k == longest for k, _, _ in b)] == [
        [longest]
    ]
    # the budget, not the cap, decides for clips of a few seconds
    assert len(batches) > 2 * len(durations) / 20


def test_without_a_budget_batches_are_the_old_fixed_count():
    batches = length_batches(_items([3.0, 1.0, 2.0, 5.0, 4.0]), BatchLimits(max_items=2))
    # sorted by length (1, 2, 3, 4, 5 s), cut every 2, visited in a shuffled order
    assert sorted([k for k, _, _ in b] for b in batches) == [
        ["k000", "k004"], ["k001", "k002"], ["k003"]]  # fmt: skip


def test_default_limits_by_kind_of_encoder(models):
    from support.toy_encoders import ToyStats

    speech = build_encoder(str(models["masked"]), "speech")
    text = build_encoder(str(models["electra"]), "text")
    assert batch_limits(speech) == BatchLimits(DEVICE_MAX_ITEMS, DEFAULT_BATCH_SECONDS)
    assert batch_limits(text) == BatchLimits(DEVICE_MAX_ITEMS, None)  # no seconds in text
    assert batch_limits(ToyStats()) == BatchLimits(DEFAULT_MAX_ITEMS, None)  # as before
    assert batch_limits(speech, 4, 10.0) == BatchLimits(4, 10.0)


class _RecordingSpeech(Encoder):
    """Records the seconds of every batch it is given."""

    modality, name, sample_rate_hz = "speech", "recording", SR

    def __init__(self):
        self.batches: list[list[float]] = []

    spec = property(lambda self: "recording")
    dim = property(lambda self: 2)

    def config(self):
        return {}

    def encode(self, batch):
        self.batches.append([w.size / SR for w in batch])
        return np.array([[w.size, w.mean()] for w in batch], dtype=np.float32)


def test_extract_cli_batches_by_seconds(corpus, tmp_path, monkeypatch):
    """`emofuse extract --batch-seconds S`: no batch holds more than S s of padded audio."""
    import emofuse.encoders.registry as registry
    from emofuse.cli import main
    from emofuse.corpus.table import write_table

    table = corpus.assign(label="neutral", speaker="", script="", source_split="")
    path = write_table(table, tmp_path / "corpus.parquet")
    recorder = _RecordingSpeech()
    # extract_features builds its encoders through the registry when called
    monkeypatch.setattr(registry, "build_encoder", lambda spec, modality: recorder)
    argv = ["extract", str(path), "--speech", "recording", "--store", str(tmp_path / "s"),
            "--batch-seconds", "2.5", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert sum(len(b) for b in recorder.batches) == 14
    for batch in recorder.batches:
        assert len(batch) == 1 or len(batch) * max(batch) <= 2.5 + 1e-3  # resampling rounds
    assert max(len(b) for b in recorder.batches) > 1


def test_extract_cli_refuses_a_bad_budget(corpus, tmp_path, capsys):
    from emofuse.cli import main
    from emofuse.corpus.table import write_table

    table = corpus.assign(label="neutral", speaker="", script="", source_split="")
    path = write_table(table, tmp_path / "corpus.parquet")
    code = main(["extract", str(path), "--speech", "egemaps", "--store", str(tmp_path / "s"),
                 "--batch-seconds", "0"])  # fmt: skip
    assert code == 2
    assert "--batch-seconds must be > 0" in capsys.readouterr().err


# ---- the precision in the key --------------------------------------------------------------


def _old_fingerprint(encoder) -> str:
    """The fingerprint as emofuse computed it before autocast existed: the config had
    exactly these keys."""
    config = encoder.config()
    old = {k: config[k] for k in config if k != "autocast"}
    assert set(old) == set(config)  # nothing new in a float32 config
    return stable_hash({"name": encoder.name, "modality": encoder.modality, "config": old,
                        "state": ""})  # fmt: skip


def test_float32_key_unchanged_and_autocast_key_apart(models):
    base = build_encoder(str(models["masked"]), "speech")
    assert set(base.config()) == {"model", "checkpoint", "layer", "pooling", "max_duration_s",
                                  "long", "dtype", "library"}  # fmt: skip
    assert base.fingerprint() == _old_fingerprint(base)
    off = build_encoder(f"{models['masked']}?autocast=off", "speech")
    assert off.fingerprint() == base.fingerprint() and off.spec == base.spec
    bf16 = build_encoder(f"{models['masked']}?autocast=bf16", "speech")
    assert bf16.fingerprint() != base.fingerprint()
    assert bf16.config()["autocast"] == "bfloat16" and "autocast=bfloat16" in bf16.spec
    assert build_encoder(bf16.spec, "speech").fingerprint() == bf16.fingerprint()
    # bfloat16 weights already had their own key; autocast adds nothing to them
    weights = build_encoder(f"{models['masked']}?dtype=bf16&autocast=bf16", "speech")
    assert "autocast" not in weights.config()
    assert weights.fingerprint() == build_encoder(f"{models['masked']}?dtype=bf16",
                                                  "speech").fingerprint()  # fmt: skip


def test_extraction_defaults_to_autocast_on_cuda_only(models, monkeypatch):
    import emofuse.encoders.hf_encoder as hf_encoder
    from emofuse.features.extract import default_precision

    cpu = default_precision(build_encoder(str(models["masked"]), "speech"))
    assert cpu.autocast_on is None  # float32 on a CPU: the key it always had
    monkeypatch.setattr(hf_encoder, "pick_device", lambda request: torch.device("cuda"))
    for spec, expected in ((str(models["masked"]), "bfloat16"),
                           (f"{models['masked']}?autocast=off", None),
                           (f"{models['masked']}?dtype=bf16", None)):  # fmt: skip
        encoder = default_precision(build_encoder(spec, "speech"))
        assert encoder.autocast_on == expected, spec


def test_autocast_vectors_are_stored_apart(models, corpus, tmp_path):
    table = corpus.iloc[:4]
    store = FeatureStore(tmp_path / "store")
    full = extract_features(table, store=store, speech=f"{models['masked']}?device=cpu",
                            progress=False)["speech"]  # fmt: skip
    half = extract_features(table, store=store, speech=f"{models['masked']}?device=cpu&autocast=bf16",
                            progress=False)["speech"]  # fmt: skip
    assert store.part_dir(full).path != store.part_dir(half).path
    a, b = store.get(table, full), store.get(table, half)
    assert not np.array_equal(a, b)
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()  # bfloat16 is close, not equal


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (compares it with the CPU)"
)
def test_gpu_vectors_match_the_cpu_at_the_stated_tolerance(models):
    """What the README states: float32 on CUDA (TF32 off) within 1e-4 of the CPU's;
    bfloat16 autocast within 10 % of the vectors' scale (as bfloat16 weights on the CPU),
    batched or clip by clip."""
    waves = [_wave(s, i) for i, s in enumerate((0.4, 1.3, 0.75))]
    for kind in ("masked", "unmasked"):
        cpu = build_encoder(f"{models[kind]}?device=cpu", "speech").encode(waves)
        gpu = build_encoder(f"{models[kind]}?device=cuda", "speech").encode(waves)
        half = build_encoder(f"{models[kind]}?device=cuda&autocast=bf16", "speech").encode(waves)
        np.testing.assert_allclose(gpu, cpu, atol=1e-4)
        scale = np.abs(cpu).max()
        assert np.abs(half - cpu).max() < 0.1 * scale
        # under bfloat16 a vector depends on its batch (the store's 64 vs predict's 1):
        # the same stated bound, clip by clip
        one = build_encoder(f"{models[kind]}?device=cuda&autocast=bf16", "speech")
        alone = np.stack([one.encode([wave])[0] for wave in waves])
        assert np.abs(half - alone).max() < 0.1 * scale
        assert np.abs(alone - cpu).max() < 0.1 * scale


# ---- the background writer ------------------------------------------------------------------


def test_a_failed_background_write_stops_the_run_and_earlier_shards_stay(tmp_path, monkeypatch):
    from support.toy_encoders import ToyStats, make_corpus

    from emofuse.features.io import FeatureStoreError, PartDir

    table = make_corpus(tmp_path / "corpus", n=10)
    store = FeatureStore(tmp_path / "store")
    written = []
    real_write = PartDir.write_shard

    def write_then_fail(self, rank, number, keys, vectors):
        if written:  # the second shard: the disk is full
            raise OSError(28, "No space left on device", str(self.shards_dir / "x.npz"))
        written.append(list(keys))
        return real_write(self, rank, number, keys, vectors)

    monkeypatch.setattr(PartDir, "write_shard", write_then_fail)
    with pytest.raises(FeatureStoreError, match="No space left"):
        store.ensure(table, ToyStats(), batch_size=2, shard_size=3, progress=False)
    monkeypatch.setattr(PartDir, "write_shard", real_write)
    assert store.available(table, ToyStats()).sum() == 3  # the first shard is whole
    report = store.ensure(table, ToyStats(), batch_size=2, shard_size=3, progress=False)
    assert report.item_counts()["computed"] == 7  # the rest, on the next run


# ---- unknown durations, cleanup, start methods, a bad item, shared flags ---------------------


def test_clips_of_unknown_length_are_batched_apart_at_the_old_count():
    """A clip without a duration may be as long as MAX_CLIP_S: under a seconds budget it
    never counts as 0 s; such clips go in batches of at most DEFAULT_MAX_ITEMS."""
    durations = [1.0, 2.0, 1.5] + [float("nan")] * 20 + [0.0] * 3
    items = _items(durations)
    batches = length_batches(items, BatchLimits(max_items=64, max_seconds=120.0))
    known = {f"k{i:03d}" for i in range(3)}
    seen = [key for batch in batches for key, _, _ in batch]
    assert sorted(seen) == sorted(items["key"])
    for batch in batches:
        keys = {key for key, _, _ in batch}
        assert keys <= known or not keys & known  # never mixed with clips of known length
        if not keys & known:
            assert len(batch) <= DEFAULT_MAX_ITEMS
    assert sum(1 for b in batches if not {k for k, _, _ in b} & known) == 3  # 23 / 8
    # without a budget (encoders that do not batch by seconds) only the count matters
    assert max(len(b) for b in length_batches(items, BatchLimits(max_items=64))) == 26


def _children() -> set[int]:
    """The pids of this process's live child processes (Linux /proc)."""
    import os

    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            text = (task / "children").read_text()
        except OSError:  # the thread ended between the listing and the read
            continue
        pids |= {int(pid) for pid in text.split()}
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def _reading_threads() -> int:
    import threading

    return sum(t.name == "emofuse-read-ahead" and t.is_alive() for t in threading.enumerate())


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("loader_workers", [0, 2])
def test_loaders_stop_after_an_error_while_its_traceback_is_held(
    models, corpus, tmp_path, monkeypatch, loader_workers
):
    import emofuse.features.compute as compute

    spec = f"{models['masked']}?device=cpu"
    before = _children()
    _extract(corpus, spec, "speech", tmp_path / "ok", loader_workers=loader_workers,
             batch_seconds=3.0)  # fmt: skip
    assert _children() == before and _reading_threads() == 0  # after a normal run

    real, calls = compute._encode_prepared, []

    def fail_on_the_second_batch(encoder, batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the model broke midway")
        return real(encoder, batch)

    monkeypatch.setattr(compute, "_encode_prepared", fail_on_the_second_batch)
    with pytest.raises(RuntimeError, match="broke midway") as held:
        _extract(corpus, spec, "speech", tmp_path / "err", loader_workers=loader_workers,
                 batch_seconds=3.0)  # fmt: skip
    assert held.traceback  # the traceback (and every frame in it) is still alive here
    assert _children() == before
    assert _reading_threads() == 0


def _vectors_through_the_loader(part, corpus, workers: int, start_method=None) -> np.ndarray:
    from emofuse.features.compute import _encode_prepared
    from emofuse.features.keys import key_items
    from emofuse.features.loading import prepared_batches

    items = key_items(corpus, "speech")
    batches = length_batches(items, BatchLimits(max_items=4, max_seconds=3.0))
    vectors: dict[str, np.ndarray] = {}
    with contextlib.closing(
        prepared_batches(part, "speech", batches, workers, start_method)
    ) as ready:
        for batch in ready:
            keys, matrix, _failures, _narrow = _encode_prepared(part, batch)
            vectors.update(zip(keys, matrix, strict=True))
    return np.stack([vectors[key] for key in sorted(vectors)])


def test_loader_processes_started_by_spawn_give_the_same_vectors(models, corpus):
    """Python 3.14 and macOS start processes by spawn/forkserver: the dataset and the
    owner watch are pickled; the vectors are the ones of the reading thread."""
    from emofuse.features.keys import key_items
    from emofuse.features.loading import _Batches

    part = build_encoder(f"{models['masked']}?device=cpu", "speech")
    thread = _vectors_through_the_loader(part, corpus, 0)
    spawned = _vectors_through_the_loader(part, corpus, 1, start_method="spawn")
    np.testing.assert_array_equal(thread, spawned)
    items = key_items(corpus, "speech")
    batches = length_batches(items, BatchLimits(max_items=4))
    dataset = pickle.loads(pickle.dumps(_Batches(batches, part.input_plan(), "speech", SR)))
    assert [dataset.payloads(i) for i in range(len(batches))] == [
        [path for _, path, _ in batch] for batch in batches]  # fmt: skip
    assert b"u03" not in pickle.dumps(dataset)  # the workers get paths, not the items


@pytest.mark.skipif(
    __import__("multiprocessing").get_start_method() != "fork",
    reason="the fault is injected by monkeypatching, which only fork carries to workers",
)
def test_an_item_the_plan_chokes_on_fails_alone_in_loader_processes(
    models, corpus, tmp_path, monkeypatch
):
    from emofuse.encoders.hf_inputs import SpeechInputPlan

    bad = tmp_path / "chokes.wav"
    sf.write(bad, _wave(12_345 / SR, 3), SR)
    table = pd.concat([corpus.iloc[:8], pd.DataFrame([{"id": "chokes", "audio": str(bad),
                       "duration_s": 12_345 / SR, "text": "x"}])], ignore_index=True)  # fmt: skip
    real = SpeechInputPlan.__call__

    def choke(self, waves):
        if any(len(wave) == 12_345 for wave in waves):
            raise ValueError("cannot pad this clip")
        return real(self, waves)

    monkeypatch.setattr(SpeechInputPlan, "__call__", choke)
    spec = f"{models['masked']}?device=cpu"
    got, report = _extract(table, spec, "speech", tmp_path / "s", loader_workers=2)
    assert report.item_counts() == {"items": 9, "computed": 8, "cached": 0, "failed": 1}
    assert report.failed[0].key == "chokes" and "cannot pad this clip" in report.failed[0].reason
    monkeypatch.setattr(SpeechInputPlan, "__call__", real)
    alone, _ = _extract(corpus.iloc[:8], spec, "speech", tmp_path / "t", loader_workers=0)
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_full_float32_holds_while_any_thread_is_inside_and_is_then_put_back():
    """torch's TF32 flags are process-wide (they exist on a CPU build too): with two
    passes at once, the first one out must not switch TF32 back on under the other."""
    import threading

    from emofuse.encoders.hf_device import ieee_float32

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[str, str]] = {}

    def first():
        with ieee_float32():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with ieee_float32():
            second_in.set()
            first_out.wait(10)
            seen["second, after the first left"] = (matmul.fp32_precision, conv.fp32_precision)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == {"second, after the first left": ("ieee", "ieee")}
    assert (matmul.fp32_precision, conv.fp32_precision) == before


def test_extraction_notes_float32_vectors_the_bfloat16_default_leaves_unused(
    models, corpus, tmp_path, monkeypatch, capsys
):
    import emofuse.encoders.hf_encoder as hf_encoder

    table, store = corpus.iloc[:3], FeatureStore(tmp_path / "store")
    spec = str(models["masked"])
    extract_features(table, store=store, speech=spec, progress=False)  # float32, on a CPU
    assert "autocast=off" not in capsys.readouterr().err
    monkeypatch.setattr(hf_encoder, "pick_device", lambda request: torch.device("cuda"))
    from emofuse.features.extract import default_precision

    default_precision(build_encoder(spec, "speech"), store)
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "add autocast=off" in err and str(store.root) in err
    default_precision(build_encoder(spec, "speech"), FeatureStore(tmp_path / "empty"))
    assert "note:" not in capsys.readouterr().err


def test_bfloat16_autocast_on_a_cpu_warns_once(models, capsys):
    encoder = build_encoder(f"{models['masked']}?device=cpu&autocast=bf16", "speech")
    waves = [_wave(0.5, 1), _wave(0.8, 2)]
    encoder.encode(waves)
    encoder.encode(waves)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "bfloat16 autocast on a CPU" in err
    build_encoder(f"{models['masked']}?device=cpu", "speech").encode(waves)
    assert "warning:" not in capsys.readouterr().err


def test_options_given_and_ignored_get_a_note(models, corpus, tmp_path, capsys):
    from support.toy_encoders import ToyStats

    from emofuse.features import ExtractOptions

    table = corpus.iloc[:4]
    extract_features(table, store=tmp_path / "a", speech=ToyStats(), loader_workers=2,
                     progress=False)  # fmt: skip
    assert "used by Hugging Face encoders only" in capsys.readouterr().err
    extract_features(table, store=tmp_path / "b", speech=f"{models['masked']}?device=cpu",
                     workers=2, loader_workers=1, batch_seconds=2.0, progress=False)  # fmt: skip
    assert capsys.readouterr().err.count("note:") == 1  # batch_seconds is used for speech
    extract_features(table, store=tmp_path / "c", text=f"{models['electra']}?device=cpu",
                     options=ExtractOptions(batch_seconds=2.0), progress=False)  # fmt: skip
    assert "applies to speech only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="options= or as keywords"):
        extract_features(table, store=tmp_path / "d", speech=ToyStats(), workers=2,
                         options=ExtractOptions(), progress=False)  # fmt: skip
