"""How fast does `read_corpus` scan a dataset-466 tree? Prints files/s per worker count.

    python bench/scan_throughput.py [--clips 21000] [--workers 1,2] [--dir DIR]

Generates the tree (tiny WAVs, one label JSON each) in a temporary folder unless --dir
names an existing one. Files are fresh in the page cache, so this measures the scan's
own cost (JSON parse + header read + listing + the duplicate-audio check), not a cold
disk. Every clip's samples differ, but they come in five lengths, so nearly every file
shares its header facts (size, frames, rate) with others: the worst case for the
duplicate check, which then compares a few blocks of each. ``--duplicates N`` plants N
copies of other clips (each reported as ``duplicate-audio``).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emofuse.corpus import read_corpus

EMOTIONS = ["1.기쁨", "2.슬픔", "3.분노", "4.불안", "5.상처", "6.당황", "7.중립"]
SCRIPTS = 60
FULL_CORPUS = 450_000


def _wav_bytes(n_samples: int) -> bytes:
    buf = io.BytesIO()
    tone = (0.1 * np.sin(np.arange(n_samples) / 5)).astype("float32")
    sf.write(buf, tone, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _unique(template: bytes, number: int) -> bytes:
    """``template`` with its first samples replaced by ``number``: every clip differs."""
    return template[:44] + number.to_bytes(8, "little") + template[52:]


def generate(root: Path, clips: int, duplicates: int = 0) -> int:
    """Write about ``clips`` clips (4/5 Training, 1/5 Validation), the last ``duplicates``
    of them copies of earlier clips; returns the count."""
    templates = [_wav_bytes(n) for n in (320, 640, 960, 1280, 1600)]  # 20-100 ms
    per_speaker = len(EMOTIONS) * SCRIPTS
    speakers = max(2, -(-clips // per_speaker))
    written = 0
    for s in range(speakers):
        split = "Validation" if s % 5 == 4 else "Training"
        for e, emotion in enumerate(EMOTIONS, start=1):
            code = f"{s:04d}_G1A3E{e}S0C0_S{s:03d}"  # stems unique across emotion folders
            rel = Path("1.감정", emotion, code)
            wav_dir = root / split / "원천데이터" / rel
            json_dir = root / split / "라벨링데이터" / rel
            wav_dir.mkdir(parents=True, exist_ok=True)
            json_dir.mkdir(parents=True, exist_ok=True)
            for script in range(1, SCRIPTS + 1):
                stem = f"{code}_{script:06d}"
                number = written if written < clips - duplicates else written % 97
                template = templates[number % len(templates)]
                (wav_dir / f"{stem}.wav").write_bytes(_unique(template, number))
                label = {
                    "파일정보": {"FileName": f"{stem}.wav", "SampleRate": 16000},
                    "전사정보": {
                        "OrgLabelText": f"대본 {script}번 문장입니다.",
                        "TransLabelText": "",
                    },
                    "화자정보": {"SpeakerName": code, "Gender": "F", "Emotion": emotion[2:]},
                }
                (json_dir / f"{stem}.json").write_text(
                    json.dumps(label, ensure_ascii=False), encoding="utf-8"
                )
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=21_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--duplicates", type=int, default=0, help="copies of other clips")
    parser.add_argument("--dir", type=Path, help="use (or fill, if empty) this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="emofuse-scan-") as tmp:
        root = args.dir or Path(tmp)
        if not any(root.glob("*/원천데이터")):
            t0 = time.perf_counter()
            n = generate(root, args.clips, args.duplicates)
            print(f"generated {n} clips in {time.perf_counter() - t0:.1f} s under {root}")
        print(f"{'workers':>7} {'clips':>7} {'problems':>8} {'seconds':>8} {'files/s':>8} "
              f"{'450k clips':>11}")  # fmt: skip
        for workers in (int(w) for w in args.workers.split(",")):
            t0 = time.perf_counter()
            result = read_corpus(root, workers=workers, progress=False)
            seconds = time.perf_counter() - t0
            # duplicate-audio problems name rows of the table, not further files
            kept = result.problems["reason"].str.startswith("duplicate-audio").sum()
            files = len(result.table) + len(result.problems) - int(kept)
            rate = files / seconds
            print(f"{workers:>7} {len(result.table):>7} {len(result.problems):>8} "
                  f"{seconds:>8.2f} {rate:>8.0f} {FULL_CORPUS / rate / 60:>9.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
