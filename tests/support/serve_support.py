"""Shared pieces for the serve tests: bundles built in milliseconds from the toy encoders
(tests/support/toy_encoders.py) on synthetic tones, real bundles trained with emofuse's pipeline
on a few EmoDB clips (for the one test on real speech), WAV bytes, and a real uvicorn
server on a free localhost port."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

import support.toy_encoders as toy_encoders  # noqa: F401  (registers toy-stats / toy-chars, which the bundles use)

#: Four EmoDB emotions, a few clips each: enough for a real (if weak) model in seconds.
TRAIN_LABELS = ("angry", "happy", "neutral", "sad")
CLIPS_PER_LABEL = 5


def emodb_table(emodb_dir: Path, per_label: int = CLIPS_PER_LABEL) -> pd.DataFrame:
    """An utterance table of the shortest clips of each training label (fast to encode),
    split ``per_label`` train + 2 val + 2 test per label."""
    manifest = pd.read_csv(emodb_dir / "manifest.csv")
    manifest = manifest[manifest["label"].isin(TRAIN_LABELS)].copy()
    manifest["audio"] = [str(emodb_dir / a) for a in manifest["audio"]]
    manifest["duration_s"] = [sf.info(a).duration for a in manifest["audio"]]
    rows = (
        manifest.sort_values(["label", "duration_s", "audio"]).groupby("label").head(per_label + 4)
    )
    rows = rows.reset_index(drop=True)
    rank = rows.groupby("label").cumcount()
    rows["part"] = np.where(
        rank < per_label, "train", np.where(rank < per_label + 2, "val", "test")
    )
    rows["id"] = [Path(a).stem for a in rows["audio"]]
    rows["script"] = [Path(a).stem[2:5] for a in rows["audio"]]
    rows["source_split"] = ""
    return rows[
        ["id", "audio", "text", "label", "speaker", "script", "duration_s", "source_split", "part"]
    ]


def heldout_clip(emodb_dir: Path) -> Path:
    """A clip that is not in the training table (the longest angry one)."""
    manifest = pd.read_csv(emodb_dir / "manifest.csv")
    rows = manifest[manifest["label"] == "angry"]
    durations = [sf.info(emodb_dir / a).duration for a in rows["audio"]]
    return emodb_dir / rows["audio"].iloc[int(np.argmax(durations))]


SPEECH_ENCODER = "egemaps"
TEXT_ENCODER = "kiwi-tfidf"
_BUNDLES: dict[str, Path] = {}


def train_bundle(emodb_dir: Path, tmp_path_factory, modality: str = "speech") -> Path:
    """A real bundle trained with emofuse's pipeline on a few EmoDB clips with the offline
    encoders (eGeMAPS for speech, Kiwi TF-IDF for text); one per modality per session."""
    if modality not in _BUNDLES:
        from emofuse.head.train import TrainConfig
        from emofuse.labels import label_order
        from emofuse.pipeline import train_and_evaluate

        table = emodb_table(emodb_dir)
        if "store" not in _BUNDLES:  # one feature store: the speech vectors are made once
            _BUNDLES["store"] = tmp_path_factory.mktemp("serve-features")
        work = tmp_path_factory.mktemp(f"serve-bundle-{modality}")
        train_and_evaluate(
            table,
            label_order(table["label"]),
            modality=modality,
            speech=SPEECH_ENCODER if modality in ("speech", "both") else None,
            text=TEXT_ENCODER if modality in ("text", "both") else None,
            store=_BUNDLES["store"],
            config=TrainConfig(epochs=20, hidden=32, batch_size=8, seed=0),
            out_dir=work / "bundle",
            progress=False,
        )
        _BUNDLES[modality] = work / "bundle"
    return _BUNDLES[modality]


def load_bundle(emodb_dir: Path, tmp_path_factory, modality: str = "speech"):
    from emofuse.bundle import Bundle

    return Bundle.load(train_bundle(emodb_dir, tmp_path_factory, modality))


# ---------------------------------------------------------------- toy bundles

#: Each toy emotion is a pitch (the toy speech encoder hears it through the zero-crossing
#: rate) and a sentence (the toy text encoder counts its characters).
TOY_PITCH_HZ = {"angry": 900.0, "happy": 600.0, "neutral": 300.0, "sad": 150.0}
TOY_SENTENCES = {
    "angry": "정말 화가 나요!",
    "happy": "오늘 정말 좋아요!",
    "neutral": "그냥 그래요.",
    "sad": "너무 슬퍼요...",
}


def toy_clip(label: str, seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    """A noisy tone at the label's pitch, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    hz = TOY_PITCH_HZ[label] * rng.uniform(0.95, 1.05)
    wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def toy_bundle(tmp_path_factory, modality: str = "speech") -> Path:
    """A bundle of the toy encoders (toy-stats, toy-chars) and a small head trained on
    synthetic clips: the real save/load/predict path in milliseconds, no data needed."""
    key = f"toy-{modality}"
    if key not in _BUNDLES:
        from emofuse.bundle import save_bundle
        from emofuse.encoders import build_encoder
        from emofuse.head.train import TrainConfig, fit_head
        from emofuse.modalities import inputs_of

        labels = list(TOY_PITCH_HZ)
        rows = [(label, seed) for label in labels for seed in range(8)]
        encoders = {}
        features = {}
        if "speech" in inputs_of(modality):
            encoders["speech"] = build_encoder("toy-stats", "speech")
            waves = [toy_clip(label, 0.4 + 0.05 * seed, seed) for label, seed in rows]
            features["speech"] = encoders["speech"].encode(waves)
        if "text" in inputs_of(modality):
            encoders["text"] = build_encoder("toy-chars", "text")
            texts = [TOY_SENTENCES[label] for label, _ in rows]
            encoders["text"].fit(texts)
            features["text"] = encoders["text"].encode(texts)
        x = np.hstack([features[m] for m in ("speech", "text") if m in features])
        y = np.array([labels.index(label) for label, _ in rows])
        trained = fit_head(
            x, y, n_classes=len(labels), input_dims={m: f.shape[1] for m, f in features.items()},
            config=TrainConfig(epochs=15, hidden=16, lr=3e-2, batch_size=8, seed=0),
            progress=False,
        )  # fmt: skip
        out = tmp_path_factory.mktemp(f"serve-{key}") / "bundle"
        save_bundle(out, trained, labels=labels, modality=modality, encoders=encoders)
        _BUNDLES[key] = out
    return _BUNDLES[key]


def load_toy_bundle(tmp_path_factory, modality: str = "speech"):
    from emofuse.bundle import Bundle

    return Bundle.load(toy_bundle(tmp_path_factory, modality))


# ---------------------------------------------------------------- audio bytes


def wav_bytes(wave: np.ndarray, sample_rate_hz: int = 16_000, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate_hz, format=fmt)
    return buffer.getvalue()


def tone(seconds: float, sample_rate_hz: int = 16_000, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# ---------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app, *, timeout_s: float = 20.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free localhost port; yield its URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port} within {timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
