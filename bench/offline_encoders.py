"""Which offline speech encoder? EmoDB, leave-one-speaker-out, standardised logistic regression.

    python bench/offline_encoders.py [--emodb DIR] [--threads 1] [--C 1.0]

Encodes the EmoDB clips (--emodb DIR: the folder holding manifest.csv) with eGeMAPS and the resemblyzer voice
encoder (one thread each), then prints, for each encoder and for both concatenated, the
unweighted average recall (UAR) and accuracy over the pooled leave-one-speaker-out
predictions (6 folds, one per speaker), the per-fold UAR mean and spread, and the
encoding speed in clips/s (wall clock and per CPU-second; the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_data import emodb_folder

BATCH = 16


def load_clips(root: Path) -> tuple[pd.DataFrame, list[np.ndarray]]:
    from tqdm.auto import tqdm

    from emofuse.audio import load_audio

    table = pd.read_csv(emodb_folder(root) / "manifest.csv")
    waves = [load_audio(root / a, 16_000) for a in tqdm(table["audio"], desc="loading audio")]
    return table, waves


def encode_timed(spec: str, waves: list[np.ndarray], threads: int) -> tuple[np.ndarray, dict]:
    from tqdm.auto import tqdm

    from emofuse.encoders import build_encoder

    encoder = build_encoder(
        spec + (f"?threads={threads}" if spec == "resemblyzer" else ""), "speech"
    )
    encoder.encode(waves[:1])  # load models, warm up
    rows = []
    wall, cpu = time.perf_counter(), time.process_time()
    for start in tqdm(range(0, len(waves), BATCH), desc=f"encoding {spec}"):
        rows.append(encoder.encode(waves[start : start + BATCH]))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    audio_s = sum(len(w) for w in waves) / 16_000
    speed = {
        "clips/s": len(waves) / wall,
        "clips/cpu-s": len(waves) / cpu,
        "x real time": audio_s / wall,
    }
    return np.concatenate(rows), speed


def leave_one_speaker_out(
    x: np.ndarray, labels: np.ndarray, speakers: np.ndarray, c: float
) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty_like(labels)
    fold_uar = []
    for speaker in np.unique(speakers):
        test = speakers == speaker
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        model.fit(x[~test], labels[~test])
        predicted[test] = model.predict(x[test])
        with warnings.catch_warnings():
            # A speaker may lack a class (EmoDB has few disgust clips); UAR is then over
            # the classes that speaker has.
            warnings.simplefilter("ignore", UserWarning)
            fold_uar.append(balanced_accuracy_score(labels[test], predicted[test]))
    return {
        "UAR": balanced_accuracy_score(labels, predicted),
        "accuracy": accuracy_score(labels, predicted),
        "fold UAR mean": float(np.mean(fold_uar)),
        "fold UAR sd": float(np.std(fold_uar)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emodb", type=Path, help="EmoDB folder (holding manifest.csv)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for resemblyzer")
    parser.add_argument(
        "--C", type=float, default=1.0, help="inverse L2 strength of the regression"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    table, waves = load_clips(args.emodb)
    labels = table["label"].to_numpy()
    speakers = table["speaker"].to_numpy()
    print(
        f"EmoDB: {len(waves)} clips, {len(set(speakers))} speakers, {len(set(labels))} labels, "
        f"{sum(len(w) for w in waves) / 16_000:.0f} s of audio"
    )

    features, speeds = {}, {}
    for spec in ("egemaps", "resemblyzer"):
        features[spec], speeds[spec] = encode_timed(spec, waves, args.threads)
    features["egemaps+resemblyzer"] = np.hstack([features["egemaps"], features["resemblyzer"]])

    rows = []
    for spec, x in features.items():
        row = {"encoder": spec, "dim": x.shape[1]}
        row.update(leave_one_speaker_out(x, labels, speakers, args.C))
        row.update(speeds.get(spec, {}))
        rows.append(row)
    result = pd.DataFrame(rows).set_index("encoder")
    print(
        f"\nLeave-one-speaker-out, StandardScaler + LogisticRegression(C={args.C}); speed on {args.threads} thread(s)"
    )
    print(result.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))


if __name__ == "__main__":
    main()
