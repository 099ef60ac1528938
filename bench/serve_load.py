"""Load on the prediction service: start `emofuse serve` with a real bundle on localhost,
send a bounded number of /predict requests at several concurrency levels, and print
requests/s and latency percentiles.

    python bench/serve_load.py --bundle BUNDLE [--clip clip.wav] [--text "..."]
    python bench/serve_load.py --emodb DIR   # trains a small eGeMAPS bundle on EmoDB

Each level stops after --requests requests or --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from bench_data import emodb_folder

WITHOUT_EMODB = "pass --bundle BUNDLE --clip CLIP"


def train_small_bundle(out_dir: Path, speech: str, emodb: Path | None) -> Path:
    """A speech bundle trained with emofuse's pipeline on 8 EmoDB clips per emotion."""
    import pandas as pd
    import soundfile as sf

    from emofuse.head.train import TrainConfig
    from emofuse.labels import label_order
    from emofuse.pipeline import train_and_evaluate

    root = emodb_folder(emodb, otherwise=WITHOUT_EMODB)
    table = pd.read_csv(root / "manifest.csv")
    table = table[table["label"].isin(["angry", "happy", "neutral", "sad"])].copy()
    table["audio"] = [str(root / a) for a in table["audio"]]
    table["duration_s"] = [sf.info(a).duration for a in table["audio"]]
    table = table.sort_values(["label", "audio"]).groupby("label").head(12).reset_index(drop=True)
    rank = table.groupby("label").cumcount()
    table["part"] = ["train" if r < 8 else "val" if r < 10 else "test" for r in rank]
    table["id"] = [Path(a).stem for a in table["audio"]]
    table["script"], table["source_split"] = "", ""
    train_and_evaluate(
        table,
        label_order(table["label"]),
        modality="speech",
        speech=speech,
        store=out_dir / "features",
        config=TrainConfig(epochs=20, hidden=64, seed=0),
        out_dir=out_dir / "bundle",
        progress=True,
    )
    return out_dir / "bundle"


def default_clip(emodb: Path | None) -> Path:
    root = emodb_folder(emodb, otherwise=WITHOUT_EMODB)
    clips = sorted((root / "wav").glob("*.wav"))
    if not clips:
        sys.exit(f"no clips in {root / 'wav'}: pass --clip PATH")
    return clips[len(clips) // 2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bundle: Path, port: int, in_flight: int, timeout_s: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "emofuse", "serve", str(bundle), "--port", str(port)]
    command += ["--workers-in-flight", str(in_flight), "--log-level", "warning"]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            sys.exit(f"emofuse serve exited with code {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
            return process
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.terminate()
                sys.exit(f"emofuse serve did not answer within {timeout_s:g} s")
            time.sleep(0.5)


def run_level(url: str, payload: dict, concurrency: int, requests: int, max_s: float) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    stop_at = start + max_s

    def worker() -> None:
        nonlocal issued
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    if issued >= requests or time.perf_counter() > stop_at:
                        return
                    issued += 1
                t0 = time.perf_counter()
                try:
                    status = client.post(f"{url}/predict", **payload).status_code
                except httpx.HTTPError as err:
                    status = type(err).__name__
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    statuses[status] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    elapsed = time.perf_counter() - start
    latencies.sort()
    pct = (
        (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))])
        if latencies
        else None
    )
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "ok": statuses.get(200, 0),
        "other": {k: v for k, v in statuses.items() if k != 200},
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * pct(0.99) if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: train a small one)")
    parser.add_argument("--speech", default="egemaps", help="speech encoder for the trained bundle")
    parser.add_argument("--clip", type=Path, help="clip to send (default: an EmoDB clip)")
    parser.add_argument("--emodb", type=Path, help="EmoDB folder (without --bundle or --clip)")
    parser.add_argument("--text", help="transcript to send (for models that read text)")
    parser.add_argument("--concurrency", default="1,4,8", help="levels (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=200, help="requests per level")
    parser.add_argument("--max-seconds", type=float, default=60, help="time bound per level")
    parser.add_argument("--workers-in-flight", type=int, default=2, help="server's bound")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="emofuse-serve-bench-") as tmp:
        bundle = args.bundle or train_small_bundle(Path(tmp), args.speech, args.emodb)
        clip = args.clip or default_clip(args.emodb)
        data = clip.read_bytes()
        payload = {"files": {"audio": (clip.name, data, "audio/wav")}}
        if args.text:
            payload["data"] = {"text": args.text}
        port = free_port()
        t0 = time.perf_counter()
        server = start_server(bundle, port, args.workers_in_flight, timeout_s=300)
        startup_s = time.perf_counter() - t0
        url = f"http://127.0.0.1:{port}"
        try:
            health = httpx.get(f"{url}/health").json()
            print(
                f"\nbundle {bundle} ({health['modality']}, {len(health['labels'])} labels); "
                f"clip {clip.name} ({len(data) / 1024:.0f} KB); server start-up incl. "
                f"warm-up {startup_s:.1f} s; --workers-in-flight {args.workers_in_flight}\n"
            )
            print(
                f"{'conc':>4} {'reqs':>5} {'ok':>5} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}  other"
            )
            for level in (int(c) for c in args.concurrency.split(",")):
                row = run_level(url, payload, level, args.requests, args.max_seconds)
                print(
                    f"{row['concurrency']:>4} {row['requests']:>5} {row['ok']:>5} "
                    f"{row['rps']:>7.1f} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f}  "
                    f"{row['other'] or ''}",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
