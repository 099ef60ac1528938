"""Hostile inputs, kept as tests: each probe below once lost data, crashed or answered
wrongly. A fix that regresses brings its probe back to red.

Bounded: toy encoders and tiny clips only (the whole module runs in well under a minute).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_bundle import LABELS, make_clips
from test_pipeline import tone_table

from emofuse.cli import main
from emofuse.corpus.table import write_table


# ------------------------------------------------------------------------ fixtures
def _tone_table(tmp_path: Path, per_label=(6, 2, 3)) -> pd.DataFrame:
    return tone_table(tmp_path, per_label)


TRAIN_FLAGS = ["--speech", "toy-speech", "--text", "toy-text", "--recipe", "paper", "--epochs", "3", "--hidden", "8",
               "--batch-size", "8", "--no-progress"]  # fmt: skip


@pytest.fixture
def split_table(tmp_path) -> Path:
    return write_table(_tone_table(tmp_path), tmp_path / "split.parquet", LABELS)


def _train_args(tmp_path: Path, split_table: Path, out: Path) -> list[str]:
    return [
        "train",
        str(split_table),
        "--store",
        str(tmp_path / "st"),
        "-o",
        str(out),
        *TRAIN_FLAGS,
    ]


def _manifest_csv(tmp_path: Path, n: int = 4) -> Path:
    paths, texts, y = make_clips(tmp_path / "m", 1, seed=5)
    path = tmp_path / "m.csv"
    pd.DataFrame(
        {"audio": [str(p) for p in paths], "text": texts, "label": [LABELS[k] for k in y]}
    ).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------ data loss
def test_train_never_deletes_a_folder_that_is_not_a_bundle(tmp_path, split_table, capsys):
    target = tmp_path / "v"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "keep").write_text("mine")
    code = main(["train", str(split_table), "--store", str(tmp_path / "st"), "-o", str(target),
                 *TRAIN_FLAGS])  # fmt: skip
    assert code == 2
    assert (target / "keep").read_text() == "mine"
    assert "bundle" in capsys.readouterr().err


def test_train_into_the_working_folder_is_refused(tmp_path, split_table, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["train", str(split_table), "--store", str(tmp_path / "st"), "-o", ".",
                 *TRAIN_FLAGS])  # fmt: skip
    assert code == 2
    assert split_table.exists()
    assert set(before) <= {p.name for p in tmp_path.iterdir()}


def test_retraining_replaces_an_existing_bundle(tmp_path, split_table):
    out = tmp_path / "bundle"
    args = _train_args(tmp_path, split_table, out)
    assert main(args) == 0
    first = json.loads((out / "config.json").read_text())
    (out / "my-notes.txt").write_text("mine")
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["labels"] == first["labels"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("bundle.", ".bundle"))]
    assert (out / "my-notes.txt").read_text() == "mine"  # never delete what is not ours


def test_a_crash_while_replacing_a_bundle_leaves_the_old_one(tmp_path, split_table, monkeypatch):
    from emofuse.bundle import save as bundle_module

    out = tmp_path / "bundle"
    args = _train_args(tmp_path, split_table, out)
    assert main(args) == 0
    before = (out / "config.json").read_bytes()
    real_rename = Path.rename

    def crash_on_swap(self, target):
        if Path(target) == out and self != out and not self.name.startswith(".bundle.old"):
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(bundle_module.Path, "rename", crash_on_swap)
    assert main(args) == 2
    assert (out / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    "make_args",
    [
        lambda m, t: ["prepare", str(m), "-o", str(m)],
        lambda m, t: ["prepare", str(m), "-o", str(t / "t.parquet"), "--problems", str(m)],
    ],
    ids=["prepare-output-is-input", "prepare-problems-is-input"],
)
def test_prepare_refuses_to_overwrite_its_input(tmp_path, make_args, capsys):
    manifest = _manifest_csv(tmp_path)
    before = manifest.read_bytes()
    assert main(make_args(manifest, tmp_path)) == 2
    assert manifest.read_bytes() == before
    assert "input" in capsys.readouterr().err


def test_split_refuses_to_overwrite_its_input(tmp_path, split_table, capsys):
    before = split_table.read_bytes()
    link = tmp_path / "link.parquet"
    link.symlink_to(split_table)
    for out in (split_table, link):
        assert main(["split", str(split_table), "--strategy", "stratified", "-o", str(out)]) == 2
    assert split_table.read_bytes() == before


# ------------------------------------------------------------------------ one-line errors
def test_unwritable_output_is_one_line(tmp_path, capsys):
    manifest = _manifest_csv(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["prepare", str(manifest), "-o", str(blocker / "out.parquet"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "out.parquet" in err


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only for this process: chmod when not root (root writes
    anyway), else ``os.access`` answers "no" under it, as on a read-only mount."""
    import os

    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)  # the test restores 0o755 when done
        return
    real = os.access

    def access(path, mode, *args, **kwargs):
        inside = Path(path).resolve().is_relative_to(folder.resolve())
        return False if inside and mode & os.W_OK else real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _extract_args(corpus: Path, store: Path) -> list[str]:
    return ["extract", str(corpus), "--speech", "toy-stats", "--store", str(store),
            "--no-progress", "--plugin", "support.toy_encoders"]  # fmt: skip


def test_a_read_only_store_that_needs_writing_is_one_line(tmp_path, monkeypatch, capsys):
    from support.toy_encoders import encoded_items, make_corpus

    table = make_corpus(tmp_path / "corpus", n=6)
    corpus = write_table(table, tmp_path / "corpus.csv")
    full = write_table(make_corpus(tmp_path / "corpus", n=9), tmp_path / "full.csv")
    store = tmp_path / "st"
    assert main(_extract_args(corpus, store)) == 0
    capsys.readouterr()
    log = tmp_path / "encoded.log"
    monkeypatch.setenv("TOY_ENCODE_LOG", str(log))
    _read_only(monkeypatch, store)
    try:
        # Everything is there already: a read-only store serves it.
        assert main(_extract_args(corpus, store)) == 0
        # Three clips are missing: refused before any encoding, in one line.
        assert main(_extract_args(full, store)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(store) in err and "read-only" in err
        assert len(err.strip().splitlines()) == 1
        assert encoded_items(log) == 0
    finally:
        for path in [store, *store.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)


def test_a_store_write_that_fails_mid_run_is_one_line(tmp_path, monkeypatch, capsys):
    """What ``os.access`` cannot foresee (the mount turned read-only mid-run, a full disk):
    the OSError of the write becomes one line naming the store folder."""
    import errno

    from support.toy_encoders import make_corpus

    from emofuse.features.io import PartDir

    corpus = write_table(make_corpus(tmp_path / "corpus", n=6), tmp_path / "corpus.csv")

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self.shards_dir / "shard.npz"))

    monkeypatch.setattr(PartDir, "write_shard", refuse)
    store = tmp_path / "st"
    assert main(_extract_args(corpus, store)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(store) in err and "read-only" in err
    # The API says the same: a FeatureStoreError naming the folder, not a bare OSError.
    from support.toy_encoders import ToyStats

    from emofuse.features import FeatureStore, FeatureStoreError

    table = make_corpus(tmp_path / "corpus", n=6)
    with pytest.raises(FeatureStoreError, match="read-only"):
        FeatureStore(tmp_path / "api").ensure(table, ToyStats(), progress=False)


@pytest.mark.parametrize("damage", ["header-size", "header-bytes", "truncated", "empty"])
def test_a_corrupt_safetensors_header_in_encoder_state_is_one_line(tmp_path, damage):
    import struct

    from emofuse.encoders.base import EncoderError
    from emofuse.encoders.registry import build_encoder

    texts = ["오늘 정말 좋아요", "너무 슬퍼요", "화가 나요", "괜찮아요 정말", "행복한 하루"] * 3
    encoder = build_encoder("kiwi-tfidf", "text")
    encoder.fit(texts)
    encoder.save_state(tmp_path / "state")
    path = next((tmp_path / "state").glob("*.safetensors"))
    data = path.read_bytes()
    broken = {
        "header-size": struct.pack("<Q", 10**15) + data[8:],
        "header-bytes": data[:8] + b"\xff" * 16 + data[24:],
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(broken)
    with pytest.raises(EncoderError) as caught:
        build_encoder("kiwi-tfidf", "text").load_state(tmp_path / "state")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("damaged", ["state/*.safetensors", "fits/*.json"])
def test_a_corrupt_encoder_state_in_the_store_is_one_line(tmp_path, capsys, damaged):
    """`emofuse extract` reloading a fitted part's state (or its fit record) from the store."""
    table = _tone_table(tmp_path)
    split = write_table(table, tmp_path / "split.parquet", LABELS)
    store = tmp_path / "st"
    args = ["extract", str(split), "--text", "kiwi-tfidf", "--store", str(store), "--no-progress"]
    assert main(args) == 0
    path = next(store.rglob(damaged))
    path.write_bytes(path.read_bytes()[:20])
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and path.name in err
    assert len(err.strip().splitlines()) == 1


def test_named_pipe_is_skipped_not_waited_on(tmp_path):
    import os
    import subprocess
    import sys

    root = tmp_path / "flat"
    root.mkdir()
    paths, texts, y = make_clips(root, 1, seed=9)
    os.mkfifo(root / "blocked.wav")
    manifest = root / "manifest.csv"
    pd.DataFrame(
        {"audio": [str(p) for p in paths] + [str(root / "blocked.wav")],
         "text": texts + ["막힌 파일"], "label": [LABELS[k] for k in y] + [LABELS[0]]}
    ).to_csv(manifest, index=False)  # fmt: skip
    out = tmp_path / "t.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "emofuse", "prepare", str(manifest), "-o", str(out),
         "--problems", str(tmp_path / "p.csv"), "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    problems = pd.read_csv(tmp_path / "p.csv")
    assert problems["file"].astype(str).str.contains("blocked.wav").any()


@pytest.mark.parametrize("damage", ["garbage-parquet", "broken-csv", "broken-labels-json"])
def test_a_corrupt_corpus_table_is_one_line(tmp_path, split_table, damage, capsys):
    if damage == "garbage-parquet":
        table = tmp_path / "bad.parquet"
        table.write_bytes(b"PAR1 not really")
        named = table.name
    else:
        table = tmp_path / "bad.csv"
        frame = pd.read_parquet(split_table)
        write_table(frame, table, LABELS)
        if damage == "broken-csv":
            table.write_text(table.read_text() + '"an unclosed quote,\n')
            named = table.name
        else:
            side = tmp_path / "bad.csv.labels.json"
            side.write_text('["happy", ')
            named = side.name
    code = main(
        ["split", str(table), "--strategy", "stratified", "-o", str(tmp_path / "o.parquet")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and named in err
    assert len(err.strip().splitlines()) == 1


def test_a_named_pipe_given_as_the_corpus_table_is_refused(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "table.parquet"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "emofuse", "split", str(fifo), "--strategy", "stratified",
         "-o", str(tmp_path / "o.parquet")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "named pipe" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("layout", ["flat", "aihub466"])
def test_named_pipes_in_a_corpus_folder_are_problem_rows(tmp_path, layout):
    """A FIFO named *.wav (and one named *.json) in a folder scan: skipped with a
    `not-a-file` problem row, never opened (opening a FIFO blocks until a writer comes)."""
    import os
    import subprocess
    import sys

    from support.corpus_fixtures import build_aihub466, build_flat, label_json, standard_clips

    root = tmp_path / "corpus"
    if layout == "flat":
        specs = [(f"PSB_0000{i}", 0.3, label_json(f"PSB_0000{i}.wav", "문장.", "기쁨"))
                 for i in (1, 2, 3)]  # fmt: skip
        pairs = build_flat(root, specs)
    else:
        pairs = build_aihub466(root, standard_clips())
    (wav_a, _), (_, json_b) = list(pairs.values())[:2]
    for path in (wav_a, json_b):
        path.unlink()
        os.mkfifo(path)
    done = subprocess.run(
        [sys.executable, "-m", "emofuse", "prepare", str(root), "-o", str(tmp_path / "t.parquet"),
         "--problems", str(tmp_path / "p.csv"), "--quiet", "--workers", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    problems = pd.read_csv(tmp_path / "p.csv")
    for path in (wav_a, json_b):
        reasons = problems.loc[problems["file"] == str(path), "reason"].astype(str)
        assert reasons.str.startswith("not-a-file").any(), problems
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == len(pairs) - 2


# ------------------------------------------------------------------------ orphaned workers
TESTS_DIR = Path(__file__).resolve().parent


def _toy_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return {**env, "EMOFUSE_PLUGINS": "support.toy_encoders", **extra}


def _workers_die_with(argv: list[str], env: dict[str, str], *, workers: int = 2) -> None:
    """Start ``argv``, wait until it has ``workers`` pool workers, SIGKILL it, and assert
    that no process it started outlives it by more than a few seconds."""
    import contextlib
    import signal
    import subprocess
    import time

    import psutil

    parent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert parent.poll() is None, f"ended early: {parent.stderr.read()}"
            assert time.monotonic() < deadline, "no pool workers within 90 s"
            children = psutil.Process(parent.pid).children(recursive=True)
            pool = [c for c in children if _is_pool_worker(c)]
            if len(pool) >= workers:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # let the workers get to their work
        children = psutil.Process(parent.pid).children(recursive=True)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=8)
        assert not alive, f"orphaned after SIGKILL of the parent: {[c.pid for c in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in children:  # never leave strays behind, even when the test fails
            with contextlib.suppress(psutil.Error):
                child.kill()


def _is_pool_worker(process) -> bool:
    import psutil

    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    # spawn workers run multiprocessing.spawn; fork workers are plain copies of the parent
    return "resource_tracker" not in cmdline


def test_extract_workers_die_with_a_killed_parent(tmp_path):
    import sys

    from support.toy_encoders import make_corpus

    corpus = write_table(make_corpus(tmp_path / "corpus", n=24), tmp_path / "corpus.csv")
    argv = [sys.executable, "-m", "emofuse", "extract", str(corpus), "--speech", "toy-stats",
            "--store", str(tmp_path / "st"), "--no-progress", "--workers", "2",
            "--batch-size", "1"]  # fmt: skip
    _workers_die_with(argv, _toy_env(TOY_SLEEP_S="1.0"))


def test_scan_workers_die_with_a_killed_parent(tmp_path):
    import sys

    script = (
        "import time\n"
        "from emofuse.corpus.scan import run_chunked\n"
        "def work(chunk):\n"
        "    time.sleep(60)\n"
        "    return [], []\n"
        "run_chunked(work, list(range(400)), workers=2, progress=False)\n"
    )
    _workers_die_with([sys.executable, "-c", script], _toy_env())


def test_grid_workers_die_with_a_killed_parent(tmp_path):
    import sys

    from test_experiment_runner import make_toy_corpus

    corpus = make_toy_corpus(tmp_path / "corpus")
    config = tmp_path / "grid.toml"
    config.write_text(
        f'name = "kill"\n[corpus]\nsource = "{corpus}"\n[split]\nstrategies = ["logo"]\n'
        '[encoders]\nspeech = ["toy-stats"]\n[grid]\nmodalities = ["speech"]\n'
        "per_label = [2, 3]\nseeds = [0, 1, 2]\n[train]\nepochs = 3000\nhidden = 64\n"
        f'[output]\ndir = "{tmp_path / "out"}"\n'
    )
    argv = [sys.executable, "-m", "emofuse", "experiment", str(config), "--no-progress", "-j", "2"]
    _workers_die_with(argv, _toy_env())


# ------------------------------------------------------------------------ silently wrong
def test_a_label_without_training_clips_is_refused(tmp_path, capsys):
    table = _tone_table(tmp_path)
    only = LABELS[0]
    table = table[(table["part"] != "train") | (table["label"] == only)]
    split = write_table(table, tmp_path / "split.parquet", LABELS)
    code = main(["train", str(split), "--store", str(tmp_path / "st"), "-o", str(tmp_path / "b"),
                 *TRAIN_FLAGS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert all(label in err for label in LABELS if label != only)
    assert not (tmp_path / "b").exists()


def test_blank_labels_are_not_a_class(tmp_path, capsys):
    manifest = _manifest_csv(tmp_path)
    frame = pd.read_csv(manifest)
    frame.loc[0, "label"] = ""
    frame.to_csv(manifest, index=False)
    out = tmp_path / "t.parquet"
    assert main(["prepare", str(manifest), "-o", str(out), "--quiet"]) == 0
    from emofuse.corpus.table import read_table

    table, labels = read_table(out)
    assert "" not in labels and "" not in set(table["label"])


def _trained_bundle(tmp_path: Path, split: Path, modality: str = "both") -> Path:
    out = tmp_path / f"bundle-{modality}"
    assert main(["train", str(split), "--store", str(tmp_path / "st"), "-o", str(out),
                 "--modality", modality, *TRAIN_FLAGS]) == 0  # fmt: skip
    return out


def test_swapped_labels_in_a_bundle_are_detected(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["labels"][0], config["labels"][1] = config["labels"][1], config["labels"][0]
    config_path.write_text(json.dumps(config))
    clip = str(next((tmp_path / "clips" / "test").glob("*.wav")))
    assert main(["predict", str(bundle), clip, "--text", "오늘은 좋아"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_flipped_weight_bytes_are_detected(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table)
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    clip = str(next((tmp_path / "clips" / "test").glob("*.wav")))
    assert main(["predict", str(bundle), clip, "--text", "오늘은 좋아"]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def _quiet_waves() -> dict[str, np.ndarray]:
    one = np.zeros(32_000, dtype=np.float32)
    one[100] = 1e-30
    noise = np.random.default_rng(0).standard_normal(32_000)
    return {"one-sample-1e-30": one, "amplitude-1e-38": (noise * 1e-38).astype(np.float32),
            "amplitude-1e-20": (noise * 1e-20).astype(np.float32)}  # fmt: skip


def _speech_encoder(spec: str, tmp_path: Path):
    from emofuse.encoders.registry import build_encoder

    if spec == "hf-tiny":
        from support.tiny_models import make_tiny_wav2vec2

        spec = str(make_tiny_wav2vec2(tmp_path / "tiny-w2v2"))
    return build_encoder(spec, "speech")


@pytest.mark.parametrize("spec", ["resemblyzer", "egemaps", "hf-tiny"])
def test_quiet_float_audio_is_an_audio_error_not_a_crash(tmp_path, spec):
    """Float WAVs far below any real signal (one sample at 1e-30, or noise at 1e-38) pass an
    "all zeros?" test; the voice encoder's volume normalisation then divided by a mean
    square that underflowed to 0 (librosa.ParameterError). Every speech encoder must encode
    them (as the silence they are: one rule, emofuse.audio_checks) or raise an AudioError."""
    from emofuse.audio import AudioError, load_audio

    encoder = _speech_encoder(spec, tmp_path)
    silence = encoder.encode([np.zeros(32_000, dtype=np.float32)])
    for name, wave in _quiet_waves().items():
        path = tmp_path / f"{name}.wav"
        sf.write(path, wave, 16_000, subtype="FLOAT")
        try:
            vectors = encoder.encode([load_audio(path, 16_000)])
        except AudioError as err:
            assert name in str(err) or "silent" in str(err).lower()
        else:
            assert np.isfinite(vectors).all(), name
            np.testing.assert_allclose(vectors, silence, atol=1e-6, err_msg=name)


def test_quiet_float_audio_in_the_feature_store_is_not_a_crash(tmp_path):
    """`extract` over a table holding a 1e-30 clip: every row ends encoded or as a
    recorded failure naming the file; the run itself never fails."""
    from emofuse.features import FeatureStore

    paths, _, _ = make_clips(tmp_path / "clips", 1, seed=4)
    for name, wave in _quiet_waves().items():
        sf.write(tmp_path / f"{name}.wav", wave, 16_000, subtype="FLOAT")
        paths.append(tmp_path / f"{name}.wav")
    table = pd.DataFrame({"id": [p.stem for p in paths], "audio": [str(p) for p in paths]})
    encoder = _speech_encoder("resemblyzer", tmp_path)
    store = FeatureStore(tmp_path / "st")
    report = store.ensure(table, encoder, progress=False)
    failed = {Path(f.file).name for f in report.failed}
    assert report.computed + len(failed) == len(table)
    assert failed <= {f"{name}.wav" for name in _quiet_waves()}
    done = table[store.available(table, encoder)]
    assert np.isfinite(store.get(done, encoder)).all()


def test_speech_bundle_given_text_says_it_ignores_it(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table, modality="speech")
    clip = str(next((tmp_path / "clips" / "test").glob("*.wav")))
    assert main(["predict", str(bundle), clip, "--text", "무시될 글"]) == 0
    captured = capsys.readouterr()
    assert "warning" in (captured.out + captured.err).lower()


def test_digital_silence_is_not_labelled_confidently(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table, modality="speech")
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    code = main(["predict", str(bundle), str(path)])
    captured = capsys.readouterr()
    text = (captured.out + captured.err).lower()
    assert code == 2 or "warning" in text
    assert "silen" in text


def test_a_two_sample_clip_at_1_hz_is_refused(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table, modality="speech")
    path = tmp_path / "tiny.wav"
    sf.write(path, np.array([0.1, -0.1], dtype=np.float32), 1)
    assert main(["predict", str(bundle), str(path)]) == 2
    assert "tiny.wav" in capsys.readouterr().err


def test_grouped_split_with_tiny_sizes_says_what_it_gave(tmp_path, capsys):
    table = _tone_table(tmp_path, per_label=(6, 0, 0)).assign(part="")
    table["speaker"] = [f"s{i % 4}" for i in range(len(table))]
    corpus = write_table(table.drop(columns=["part"]), tmp_path / "c.parquet", LABELS)
    code = main(["split", str(corpus), "--strategy", "speaker", "--test-size", "0.01",
                 "--val-size", "0.01", "-o", str(tmp_path / "s.parquet")])  # fmt: skip
    said = " ".join(capsys.readouterr()).lower()
    assert code == 0
    # The split could not honour 1%: it must say what it was asked, what it gave and why.
    assert "asked" in said and "1%" in said and "speaker" in said


# ------------------------------------------------------------------------ prediction path (H9)
# One length policy (emofuse.audio_checks.MAX_CLIP_S), /predict form fields, unknown words.
LONG_S = 30 * 60


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """A 30-minute 16 kHz WAV (57.6 MB), written a minute at a time."""
    path = tmp_path_factory.mktemp("long") / "meeting.wav"
    rng = np.random.default_rng(0)
    block = (0.05 * rng.standard_normal(16_000 * 60)).astype(np.float32)
    with sf.SoundFile(path, "w", 16_000, 1, subtype="PCM_16") as out:
        for _ in range(LONG_S // 60):
            out.write(block)
    return path


def _says_too_long(message: str, path: Path, limit_s: float) -> None:
    assert path.name in message and f"{LONG_S:.1f} s" in message, message
    assert f"{limit_s:g} s" in message and "emofuse timeline" in message, message


def test_a_30_minute_clip_is_refused_by_predict_from_its_header(long_wav, tmp_path_factory, capsys):
    import time

    from support.serve_support import toy_bundle

    from emofuse import audio_checks

    bundle = toy_bundle(tmp_path_factory, "speech")
    started = time.monotonic()
    assert main(["predict", str(bundle), str(long_wav)]) == 2
    assert time.monotonic() - started < 10
    _says_too_long(capsys.readouterr().err, long_wav, audio_checks.MAX_CLIP_S)
    # --max-clip-s sets another limit for one run
    assert main(["predict", str(bundle), str(long_wav), "--max-clip-s", "60"]) == 2
    _says_too_long(capsys.readouterr().err, long_wav, 60)
    assert main(["predict", str(bundle), str(long_wav), "--max-clip-s", "0"]) == 2
    assert "--max-clip-s" in capsys.readouterr().err
    # a manifest: that row fails alone, the others are predicted
    paths, _, _ = make_clips(tmp_path_factory.mktemp("short"), 1, seed=3)
    manifest = long_wav.parent / "m.csv"
    pd.DataFrame({"audio": [str(long_wav), *map(str, paths)]}).to_csv(manifest, index=False)
    out = long_wav.parent / "p.csv"
    assert main(["predict", str(bundle), "--manifest", str(manifest), "-o", str(out),
                 "--no-progress"]) == 1  # fmt: skip
    rows = pd.read_csv(out, keep_default_na=False)
    _says_too_long(rows["error"].iloc[0], long_wav, audio_checks.MAX_CLIP_S)
    assert (rows["error"].iloc[1:] == "").all() and (rows["predicted"].iloc[1:] != "").all()


def test_a_30_minute_clip_costs_the_engine_no_memory(long_wav, tmp_path_factory):
    """The engine refuses from the header: peak RSS grows by far less than the 115 MB a
    decoded 30-minute float32 clip would take (or the GBs an encoder would)."""
    import subprocess
    import sys

    from support.serve_support import toy_bundle

    bundle = toy_bundle(tmp_path_factory, "speech")
    short = long_wav.parent / "short.wav"
    sf.write(short, np.random.default_rng(1).standard_normal(8_000).astype(np.float32) * 0.1,
             16_000)  # fmt: skip
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux)")
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the parent
    # (here: pytest), VmHWM is this process's own peak.
    script = (
        "import json, re, sys, time\n"
        "import support.toy_encoders\n"
        "from emofuse.bundle import Bundle\n"
        "from emofuse.predict.engine import PredictInput, PredictionEngine\n"
        "def peak_kb():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s*(\\d+)', status).group(1))\n"
        "engine = PredictionEngine(Bundle.load(sys.argv[1]))\n"
        "engine.predict([PredictInput(sys.argv[2])])  # warm: encoders loaded\n"
        "before = peak_kb()\n"
        "start = time.monotonic()\n"
        "(outcome,) = engine.predict_each([PredictInput(sys.argv[3])])\n"
        "print(json.dumps({'grew_kb': peak_kb() - before, 'peak_kb': peak_kb(),\n"
        "                  'seconds': time.monotonic() - start,\n"
        "                  'kind': type(outcome.error).__name__, 'error': str(outcome.error)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(bundle), str(short), str(long_wav)],
        capture_output=True, text=True, timeout=120, env=_toy_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["kind"] == "AudioTooLong", got
    assert got["grew_kb"] < 40_000 and got["peak_kb"] < 1_000_000, got
    assert got["seconds"] < 2.0, got


def test_a_30_minute_upload_is_413_from_its_header(long_wav, tmp_path_factory):
    from support.serve_support import load_toy_bundle

    from emofuse import audio_checks
    from emofuse.serve import ServeLimits
    from emofuse.serve.handlers import PredictionService

    service = PredictionService(
        load_toy_bundle(tmp_path_factory, "speech"), ServeLimits(max_body_bytes=200 * 2**20)
    )
    item = service.item(0, long_wav.name, long_wav.read_bytes(), None)
    service.decode_item(item)
    assert item.status == 413 and item.audio is None
    _says_too_long(item.detail, long_wav, audio_checks.MAX_CLIP_S)


def test_a_30_minute_clip_is_a_recorded_failure_in_the_feature_store(long_wav, tmp_path):
    from support.toy_encoders import ToyStats

    from emofuse import audio_checks
    from emofuse.features import FeatureStore

    paths, _, _ = make_clips(tmp_path / "clips", 1, seed=6)
    table = pd.DataFrame({"id": ["long", *(p.stem for p in paths)],
                          "audio": [str(long_wav), *map(str, paths)]})  # fmt: skip
    report = FeatureStore(tmp_path / "st").ensure(table, ToyStats(), progress=False)
    assert report.computed == len(paths) and len(report.failed) == 1
    _says_too_long(report.failed[0].reason, long_wav, audio_checks.MAX_CLIP_S)


def test_one_setting_sets_the_length_limit_of_every_path(tmp_path, tmp_path_factory, monkeypatch,
                                                         capsys):  # fmt: skip
    """emofuse.audio_checks.MAX_CLIP_S is the one setting: predict, the engine, the service
    and the feature store all follow it; the service may lower it, never raise it."""
    from support.serve_support import load_toy_bundle, toy_bundle
    from support.toy_encoders import ToyStats

    from emofuse import audio_checks
    from emofuse.audio import AudioTooLong
    from emofuse.features import FeatureStore
    from emofuse.predict.engine import PredictInput, PredictionEngine
    from emofuse.serve import ServeLimits

    clip = tmp_path / "two-seconds.wav"
    sf.write(clip, 0.1 * np.random.default_rng(2).standard_normal(32_000), 16_000)
    monkeypatch.setattr(audio_checks, "MAX_CLIP_S", 1.0)
    bundle = toy_bundle(tmp_path_factory, "speech")
    assert main(["predict", str(bundle), str(clip)]) == 2
    assert "1 s maximum" in capsys.readouterr().err
    with pytest.raises(AudioTooLong):
        PredictionEngine(load_toy_bundle(tmp_path_factory, "speech")).predict([PredictInput(clip)])
    assert ServeLimits().max_audio_s == 1.0
    with pytest.raises(ValueError, match="MAX_CLIP_S"):
        ServeLimits(max_audio_s=2.0)
    assert main(["serve", str(bundle), "--max-clip-s", "2"]) == 2
    assert "--max-clip-s" in capsys.readouterr().err
    table = pd.DataFrame({"id": ["c"], "audio": [str(clip)]})
    report = FeatureStore(tmp_path / "st").ensure(table, ToyStats(), progress=False)
    assert len(report.failed) == 1 and "too long" in report.failed[0].reason


def test_predict_help_states_the_length_policy(capsys):
    from emofuse import audio_checks

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "--max-clip-s" in said and f"default {audio_checks.MAX_CLIP_S:g}" in said
    assert "MAX_CLIP_S" in said and "emofuse timeline" in said


# /predict with repeated or unknown form fields: never silently one of them.
@pytest.mark.parametrize(
    "route, files, data, named",
    [
        ("/predict", [("audio", "a.wav"), ("audio", "b.wav")], {}, "'audio' sent 2 times"),
        ("/predict", [("audio", "a.wav")], {"text": ["하나", "둘"]}, "'text' sent 2 times"),
        ("/predict", [("file", "a.wav")], {}, "unexpected field 'file'"),
        ("/predict", [("audio", "a.wav")], {"lang": "ko"}, "unexpected field 'lang'"),
        ("/predict/batch", [("audio", "a.wav")], {"texts_json": ['["a"]', '["b"]']},
         "'texts_json' sent 2 times"),
        ("/predict/batch", [("clips", "a.wav")], {}, "unexpected field 'clips'"),
    ],
    ids=["two-audio", "two-text", "file-not-audio", "unknown-form-field", "two-texts-json",
         "batch-unknown-field"],
)  # fmt: skip
def test_repeated_or_unknown_form_fields_are_422(tmp_path_factory, route, files, data, named):
    from fastapi.testclient import TestClient
    from support.serve_support import load_toy_bundle, toy_clip, wav_bytes

    from emofuse.serve import create_app

    app = create_app(load_toy_bundle(tmp_path_factory, "both"))
    parts = [(field, (name, wav_bytes(toy_clip("sad", seed=k)), "audio/wav"))
             for k, (field, name) in enumerate(files)]  # fmt: skip
    with TestClient(app) as client:
        response = client.post(route, files=parts, data=data)
        assert response.status_code == 422, response.text
        assert named in response.json()["detail"]
        one = client.post("/predict", files=[("audio", parts[0][1])], data={"text": "화가 나요"})
        assert one.status_code == 200, one.text  # one of each is still fine


# A text with no word the text encoder knows: a warning on every path, never a bare label.
NO_WORDS = "xyzzy plugh"


def _text_bundle(tmp_path: Path, spec: str, modality: str = "text"):
    """A bundle of ``spec`` (fitted on a few Korean sentences) and, for ``both``, toy-stats."""
    from support.serve_support import TOY_SENTENCES, toy_clip

    from emofuse.bundle import Bundle, save_bundle
    from emofuse.encoders import build_encoder
    from emofuse.head.train import TrainConfig, fit_head

    labels = list(TOY_SENTENCES)
    texts = [f"{TOY_SENTENCES[label]} {extra}" for label in labels for extra in ("", "네", "음")]
    y = np.array([labels.index(label) for label in labels for _ in range(3)])
    encoders = {"text": build_encoder(spec, "text")}
    if getattr(encoders["text"], "needs_labels", False):
        encoders["text"].fit(texts, labels=[labels[k] for k in y])
    elif encoders["text"].needs_fit:
        encoders["text"].fit(texts)
    features = {"text": encoders["text"].encode(texts)}
    if modality == "both":
        encoders["speech"] = build_encoder("toy-stats", "speech")
        waves = [toy_clip(labels[k], 0.5, seed=i) for i, k in enumerate(y)]
        features = {"speech": encoders["speech"].encode(waves), **features}
    trained = fit_head(
        np.hstack(list(features.values())), y, n_classes=len(labels),
        input_dims={m: f.shape[1] for m, f in features.items()},
        config=TrainConfig(epochs=5, hidden=8, batch_size=4, seed=0, min_steps=0),
        progress=False,
    )  # fmt: skip
    out = tmp_path / f"bundle-{spec}-{modality}"
    save_bundle(out, trained, labels=labels, modality=modality, encoders=encoders)
    return out, Bundle.load(out)


@pytest.mark.parametrize("spec", ["toy-chars", "kiwi-tfidf", "kiwi-sparse", "toy-len"])
def test_a_text_with_no_known_words_gets_a_warning(tmp_path, spec):
    import support.toy_encoders as toy_encoders  # noqa: F401  (registers toy-chars, toy-len)

    from emofuse.encoders.registry import available_encoders
    from emofuse.predict.engine import PredictInput, PredictionEngine

    if spec not in available_encoders("text"):
        pytest.skip(f"no {spec} encoder in this tree")
    _, bundle = _text_bundle(tmp_path, spec)
    unknown, known = PredictionEngine(bundle).predict(
        [PredictInput(None, NO_WORDS), PredictInput(None, "오늘 정말 좋아요!")]
    )
    if spec == "toy-len":  # no vocabulary at all: every text is "known", no false alarm
        assert not unknown.extra.get("warnings") and not known.extra.get("warnings")
        return
    assert any("no word" in w and spec in w for w in unknown.extra.get("warnings", [])), unknown
    assert not known.extra.get("warnings"), known


def test_no_known_words_shows_in_cli_manifest_and_api(tmp_path, capsys):
    from fastapi.testclient import TestClient
    from support.serve_support import toy_clip, wav_bytes

    from emofuse.serve import create_app

    path, bundle = _text_bundle(tmp_path, "toy-chars")
    assert main(["predict", str(path), "--text", NO_WORDS]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("warning:") and "no word" in line for line in out.splitlines())
    assert main(["predict", str(path), "--text", "오늘 정말 좋아요!"]) == 0
    assert "warning" not in capsys.readouterr().out

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"text": [NO_WORDS, "오늘 정말 좋아요!"]}).to_csv(manifest, index=False)
    result = tmp_path / "p.csv"
    assert main(["predict", str(path), "--manifest", str(manifest), "-o", str(result),
                 "--no-progress"]) == 0  # fmt: skip
    warnings = pd.read_csv(result, keep_default_na=False)["warnings"].tolist()
    assert "no word" in warnings[0] and warnings[1] == ""

    both_path, both = _text_bundle(tmp_path, "toy-chars", "both")
    with TestClient(create_app(both)) as client:
        clip = {"audio": ("a.wav", wav_bytes(toy_clip("happy")), "audio/wav")}
        said = client.post("/predict", files=clip, data={"text": NO_WORDS}).json()
        assert any("no word" in w and "audio alone" in w for w in said["warnings"]), said
        said = client.post("/predict", files=clip, data={"text": "오늘 정말 좋아요!"}).json()
        assert said["warnings"] == []


# ------------------------------------------------------------------------ outputs (lead)
def test_evaluate_refuses_to_overwrite_its_input_table(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table, modality="speech")
    out = tmp_path / "ev"
    out.mkdir()
    table = pd.read_parquet(split_table)
    inside = out / "predictions.csv"
    table.to_csv(inside, index=False)
    before = inside.read_bytes()
    assert main(["evaluate", str(bundle), str(inside), "-o", str(out), "--no-progress"]) == 2
    assert inside.read_bytes() == before
    assert "input" in capsys.readouterr().err


def test_timeline_refuses_to_overwrite_its_transcript(tmp_path, split_table, capsys):
    bundle = _trained_bundle(tmp_path, split_table, modality="speech")
    out = tmp_path / "tl"
    out.mkdir()
    transcript = out / "segments.csv"
    transcript.write_text("start_s,end_s,text\n0,1,안녕\n")
    clip = str(next((tmp_path / "clips" / "test").glob("*.wav")))
    code = main(["timeline", str(bundle), clip, "-o", str(out), "--transcript", str(transcript)])
    assert code == 2
    assert transcript.read_text().startswith("start_s,end_s,text")


def test_a_blank_label_in_a_csv_split_is_refused_not_a_class(tmp_path, capsys):
    table = _tone_table(tmp_path)
    table.loc[0, "label"] = ""
    split = tmp_path / "split.csv"
    table.to_csv(split, index=False)  # no label sidecar: labels come from the column
    code = main(["train", str(split), "--store", str(tmp_path / "st"), "-o", str(tmp_path / "b"),
                 *TRAIN_FLAGS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "no label" in err and "train 1" in err
    assert not (tmp_path / "b").exists()


def test_an_untrained_label_is_named_with_its_counts_per_part(tmp_path, capsys):
    table = _tone_table(tmp_path)
    table = table[(table["part"] != "train") | (table["label"] != LABELS[2])]
    split = write_table(table, tmp_path / "split.parquet", LABELS)
    code = main(["train", str(split), "--store", str(tmp_path / "st"), "-o", str(tmp_path / "b"),
                 *TRAIN_FLAGS])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"{LABELS[2]} (train 0 val 2 test 3)" in err
