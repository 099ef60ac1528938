"""Timeline speed, memory and segmentation accuracy on real speech (EmoDB).

    python bench/timeline.py [--emodb DIR] [--work DIR] [--minutes 1 10 60] [--asr-minutes 1]

1. Trains an egemaps+resemblyzer bundle on the EmoDB speakers outside HELD_OUT (cached
   in --work).
2. Accuracy: the held-out speakers' clips joined by 1.2-2.0 s pauses of -60 dBFS noise
   into one recording; share of clips matched by a segment (IoU >= 0.5), mean boundary
   error of matched clips, UAR of the segment labels (each clip takes its best-overlapping
   segment's label) against the UAR of the same bundle on the clips themselves and on
   the clips cut from the recording at their true boundaries (noise, no segmentation).
3. Speed: recordings of each --minutes length (the held-out clips cycled); each timeline
   runs in a fresh process, which loads the models first (reported apart), then reports
   the timeline's wall time, CPU time and the process's peak RSS (ru_maxrss), with and
   without Vosk ASR (ASR only for --asr-minutes: it runs at about real time). On a shared
   machine wall time follows the load; CPU time says what the work costs.
Prints a table and `uptime` (the machine is shared: load changes the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_data import emodb_folder

HELD_OUT = ("emodb03", "emodb16")  # 96 clips, every emotion, one male and one female voice
SPEC = "egemaps+resemblyzer"


def train_bundle(emodb: Path, out: Path) -> Path:
    """The bench bundle (trained once; reused while ``out`` exists)."""
    if (out / "config.json").exists():
        return out
    from tqdm.auto import tqdm

    from emofuse.audio import load_audio
    from emofuse.bundle import save_bundle
    from emofuse.encoders import build_encoder
    from emofuse.head.train import TrainConfig, fit_head

    table = pd.read_csv(emodb / "manifest.csv")
    train = table[~table.speaker.isin(HELD_OUT)].reset_index(drop=True)
    labels = sorted(table.label.unique())
    encoder = build_encoder(SPEC, "speech")
    rows = []
    for start in tqdm(range(0, len(train), 16), desc="encoding training clips"):
        waves = [load_audio(emodb / a, 16_000) for a in train.audio[start : start + 16]]
        rows.append(encoder.encode(waves))
    x = np.vstack(rows)
    y = np.array([labels.index(v) for v in train.label])
    config = TrainConfig(epochs=60, hidden=128, lr=1e-3, batch_size=32)
    trained = fit_head(x, y, n_classes=len(labels), config=config,
                       input_dims={"speech": x.shape[1]}, progress=False)  # fmt: skip
    return save_bundle(out, trained, labels=labels, modality="speech",
                       encoders={"speech": encoder},
                       provenance={"held_out_speakers": list(HELD_OUT)})  # fmt: skip


def held_out(emodb: Path) -> pd.DataFrame:
    table = pd.read_csv(emodb / "manifest.csv")
    table = table[table.speaker.isin(HELD_OUT)].sample(frac=1.0, random_state=0)
    return table.assign(path=[str(emodb / a) for a in table.audio]).reset_index(drop=True)


def accuracy(bundle_dir: Path, clips: pd.DataFrame, work: Path) -> dict:
    from emofuse.bundle import Bundle
    from emofuse.metrics import compute_metrics
    from emofuse.timeline import build_timeline
    from emofuse.timeline.compose import compose_recording
    from emofuse.timeline.scoring import boundary_error_s, match_segments

    bundle = Bundle.load(bundle_dir)
    recording = work / "accuracy.wav"
    truth = compose_recording(list(clips.path), list(clips.label), recording, seed=1)
    timeline = build_timeline(bundle, recording, progress=False)
    timeline.save(work / "accuracy_timeline")  # segments.csv, summary.json, timeline.png
    spans = list(zip(truth.start_s, truth.end_s, strict=True))
    found = list(zip(timeline.table.start_s, timeline.table.end_s, strict=True))
    match = match_segments(spans, found)
    y_seg = [
        timeline.table.label.iloc[j] if j >= 0 else "(none)" for j in match.segment
    ]  # a clip no segment overlaps counts as wrong
    clip_level = [p.label for p in bundle.predict(list(clips.path))]
    from emofuse.timeline.reader import iter_blocks, iter_spans

    # The same bundle on the clips as cut from the recording at their true boundaries:
    # what the noise costs, apart from the segmentation.
    cut = [(w, 16_000) for _, w in iter_spans(iter_blocks(recording), spans)]
    oracle = [p.label for p in bundle.predict(cut)]
    labels = bundle.labels
    return {
        "clips": len(truth),
        "recording_s": round(float(truth.end_s.iloc[-1]), 1),
        "segments": len(timeline.table),
        "matched_iou_0.5": match.share_matched(0.5),
        "boundary_error_s": boundary_error_s(spans, found, match),
        "segment_uar": compute_metrics(list(truth.label), y_seg, labels + ["(none)"])["uar"],
        "true_boundary_uar": compute_metrics(list(truth.label), oracle, labels)["uar"],
        "clip_uar": compute_metrics(list(truth.label), clip_level, labels)["uar"],
    }


def one_run(bundle_dir: str, recording: str, asr: str) -> None:
    """Child process: build one timeline and print wall time and peak RSS as JSON."""
    from emofuse.bundle import Bundle
    from emofuse.timeline import build_timeline
    from emofuse.timeline.reader import recording_info

    bundle = Bundle.load(bundle_dir)
    loading = time.perf_counter()
    bundle.predict([(np.zeros(16_000, dtype=np.float32), 16_000)])  # load the encoders
    if asr != "none":
        from emofuse.asr import build_asr

        asr = build_asr(asr)
        asr.transcribe(np.zeros(16_000, dtype=np.float32), 16_000)  # load the Vosk model
    loading = time.perf_counter() - loading
    started, cpu_started = time.perf_counter(), time.process_time()
    timeline = build_timeline(bundle, recording, asr=None if asr == "none" else asr, progress=False)
    wall = time.perf_counter() - started
    duration = recording_info(recording).duration_s
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = time.process_time() - cpu_started
    print(json.dumps({"audio_s": duration, "wall_s": wall, "x_real_time": duration / wall,
                      "cpu_s": cpu, "load_s": loading, "x_real_time_cpu": duration / cpu,
                      "peak_rss_mb": usage.ru_maxrss / 1024, "load1": os.getloadavg()[0], "segments": len(timeline.table)}))  # fmt: skip


def speed(
    bundle_dir: Path,
    clips: pd.DataFrame,
    work: Path,
    minutes: list[float],
    asr_minutes: list[float],
) -> list[dict]:
    from emofuse.timeline.compose import compose_recording

    rows = []
    for m in minutes:
        recording = work / f"speech_{m:g}min.wav"
        if not recording.exists():
            compose_recording(list(clips.path), list(clips.label), recording,
                              seed=2, repeat_until_s=m * 60, subtype="PCM_16")  # fmt: skip
        for asr in ("none", "vosk") if m in asr_minutes else ("none",):
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(bundle_dir), str(recording), asr],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"minutes": m, "asr": asr, **result})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emodb", type=Path, help="EmoDB folder (manifest.csv + wav/)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/emofuse-bench-timeline"))
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 10, 60])
    parser.add_argument("--asr-minutes", type=float, nargs="*", default=[1])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("BUNDLE", "RECORDING", "ASR"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.one:
        one_run(*args.one)
        return
    args.emodb = emodb_folder(args.emodb)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle_dir = train_bundle(args.emodb, args.work / "bundle")
    clips = held_out(args.emodb)
    load_before = os.getloadavg()
    if not args.skip_accuracy:
        acc = accuracy(bundle_dir, clips, args.work)
        print("\nsegmentation accuracy (held-out EmoDB speakers " + ", ".join(HELD_OUT) + ")")
        for key, value in acc.items():
            print(f"  {key:18} {value:.3f}" if isinstance(value, float) else f"  {key:18} {value}")
    rows = speed(bundle_dir, clips, args.work, args.minutes, args.asr_minutes)
    print(f"\nspeed and memory ({SPEC} bundle, {os.cpu_count()} cores)")
    header = ("minutes", "asr", "wall s", "x RT", "CPU s", "x RT/CPU", "load s", "RSS MB",
              "segments", "load1")  # fmt: skip
    print("  " + " ".join(f"{h:>9}" for h in header))
    for r in rows:
        values = (f"{r['minutes']:g}", r["asr"], f"{r['wall_s']:.1f}", f"{r['x_real_time']:.1f}",
                  f"{r['cpu_s']:.1f}", f"{r['x_real_time_cpu']:.1f}", f"{r['load_s']:.1f}",
                  f"{r['peak_rss_mb']:.0f}", str(r["segments"]), f"{r['load1']:.1f}")  # fmt: skip
        print("  " + " ".join(f"{v:>9}" for v in values))
    print("  (x RT = audio seconds per wall second; x RT/CPU = per CPU second of the process;")
    print("   load s = loading the models, before the timeline; load1 = 1-minute load average)")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nload before: {' '.join(f'{v:.2f}' for v in load_before)}; after: {uptime}")


if __name__ == "__main__":
    main()
