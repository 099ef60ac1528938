"""Feature-store throughput: eGeMAPS clips/s with 1 and 2 workers, then a cache-hit run.

Uses the EmoDB recordings given with --emodb DIR (the folder holding manifest.csv),
otherwise generated clips (1-4 s of noisy tones). Prints a table; nothing is asserted.

    python bench/feature_store.py [--emodb DIR] [--clips N] [--batch-size 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_data import emodb_folder

from emofuse.encoders import build_encoder
from emofuse.features import FeatureStore


def emodb_table(root: Path, limit: int | None) -> pd.DataFrame:
    import soundfile as sf

    manifest = pd.read_csv(emodb_folder(root) / "manifest.csv")
    if limit:
        manifest = manifest.iloc[:limit]
    paths = [root / a for a in manifest["audio"]]
    return pd.DataFrame(
        {
            "id": [p.stem for p in paths],
            "audio": [str(p) for p in paths],
            "text": manifest["text"],
            "duration_s": [sf.info(str(p)).duration for p in paths],
        }
    )


def generated_table(directory: Path, n: int) -> pd.DataFrame:
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        seconds = float(rng.uniform(1.0, 4.0))
        t = np.arange(int(16_000 * seconds)) / 16_000
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(
            len(t)
        )
        path = directory / f"clip{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), 16_000)
        rows.append({"id": path.stem, "audio": str(path), "text": "", "duration_s": seconds})
    return pd.DataFrame(rows)


def _cpu_s() -> float:
    """CPU seconds of this process plus its finished children (pool workers)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clips", type=int, default=None, help="limit (default: all EmoDB, or 200 generated)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--encoder", default="egemaps", help="speech encoder spec")
    parser.add_argument("--emodb", type=Path, help="EmoDB folder (default: generated clips)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="emofuse-bench-") as tmp:
        tmp_path = Path(tmp)
        if args.emodb is not None:
            table, source = emodb_table(args.emodb, args.clips), "EmoDB"
        else:
            (tmp_path / "wav").mkdir()
            table, source = generated_table(tmp_path / "wav", args.clips or 200), "generated"
        audio_s = table["duration_s"].sum()
        print(
            f"{len(table)} {source} clips, {audio_s:.0f} s of audio, encoder {args.encoder}, "
            f"batch size {args.batch_size}",
            file=sys.stderr,
        )
        encoder = build_encoder(args.encoder, "speech")
        rows = []
        for workers in args.workers:
            store = FeatureStore(tmp_path / f"store-w{workers}")
            cpu = _cpu_s()
            report = store.ensure(
                table, encoder, batch_size=args.batch_size, workers=workers, progress=True
            )
            done = report.item_counts()["computed"]  # clips, not vectors (one per part)
            rows.append(("extract (empty store)", workers, done, report.seconds, _cpu_s() - cpu))
        store = FeatureStore(tmp_path / f"store-w{args.workers[0]}")
        cpu = _cpu_s()
        report = store.ensure(table, encoder, batch_size=args.batch_size, progress=False)
        done = report.item_counts()["computed"]
        rows.append(("second run (all cached)", 1, done, report.seconds, _cpu_s() - cpu))
        start, cpu = time.perf_counter(), _cpu_s()
        matrix = store.get(table, encoder)
        name = f"get() {matrix.shape[0]}x{matrix.shape[1]}"
        rows.append((name, 1, 0, time.perf_counter() - start, _cpu_s() - cpu))

    # CPU time is what contention on a shared machine does not inflate; wall time is.
    print(f"\nload average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| run | workers | computed | wall s | clips/s | CPU s (all processes) | CPU ms/clip |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, workers, computed, seconds, cpu_s in rows:
        rate = len(table) / seconds if seconds > 0 else float("inf")
        print(
            f"| {name} | {workers} | {computed} | {seconds:.2f} | {rate:.1f} | {cpu_s:.2f} | "
            f"{1000 * cpu_s / len(table):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
