"""The published recipe at the speed of the GPU: extraction and fine-tuning with models of
the paper's sizes, through the real commands, on a synthetic corpus.

Speed does not depend on the weights, so both models are built with random weights from
their configurations (bench/hf_encoders.py: a wav2vec2-large-robust-shaped speech model,
24 layers, 1024 wide, stable layer norm; a KcELECTRA-base-shaped text model, 12 layers,
768 wide, 54,343 words) and saved as local checkpoints; the corpus is ``--clips`` WAV
files of 1.5-8 s with Korean sentences. Reported, each from a fresh process (so start-up
counts as a user sees it):

  * speech extraction (`emofuse extract`), bfloat16 autocast (the CUDA default) and
    float32 (``autocast=off``): seconds of audio per second once the first batch is done,
    seconds from the command's start to its first batch, the whole run;
  * text extraction: sentences per second, the same way;
  * fine-tuning both models (bfloat16, batch 16): optimiser steps per second;
  * the GPU's busy share while each runs (nvidia-smi samples every 0.2 s, else
    ``torch.cuda.utilization()``), over the steady part.

    python bench/gpu_paper_encoders.py                 # on a CUDA machine (minutes)
    python bench/gpu_paper_encoders.py --smoke         # tiny models, any device: the code path
    python bench/gpu_paper_encoders.py --tiny          # CPU: the input pipeline alone

``--tiny`` measures only what runs beside the model (read, decode, resample 44.1 -> 16 kHz,
split, pad) with a model that does nothing, in clips per second with 1 and 2 loader
processes (and the one reading thread used on a CPU), plus the CPU seconds each clip cost,
which a machine shared with other work does not distort.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SR = 16_000
LABELS = ("happy", "anxious", "angry", "sad", "embarrassed", "neutral", "hurt")
WORDS = ("오늘", "정말", "기분이", "좋아요", "내일", "시험이", "걱정돼서", "잠이", "안", "와",
         "왜", "이렇게", "화가", "나는지", "모르겠어", "너무", "슬퍼서", "눈물이", "났어요",
         "갑자기", "그런", "말을", "들으니", "당황스럽네요", "그냥", "평범한", "하루였어요",
         "친구가", "선물을", "줘서", "행복해요", "지하철이", "또", "늦어서", "짜증이")  # fmt: skip
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ---- the synthetic corpus and the models -------------------------------------------------
def sentence(rng: np.random.Generator, index: int) -> str:
    """A distinct Korean sentence of 4-20 words (the number keeps every one distinct)."""
    words = rng.choice(WORDS, size=int(rng.integers(4, 21)))
    return " ".join(words) + f" {index}번."


def make_corpus(root: Path, n: int, rate_hz: int, seed: int = 0) -> Path:
    """``n`` WAV clips of 1.5-8 s at ``rate_hz`` (tones and noise) with Korean sentences,
    as an utterance table (``part``: all train but 16 val and 16 test rows)."""
    import pandas as pd
    import soundfile as sf

    from emofuse.corpus.table import write_table

    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        seconds = float(rng.uniform(1.5, 8.0))
        t = np.arange(int(seconds * rate_hz)) / rate_hz
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(90, 300) * t) + 0.03 * rng.standard_normal(
            t.size
        )
        path = root / "wav" / f"c{i:05d}.wav"
        sf.write(path, wave.astype(np.float32), rate_hz, subtype="PCM_16")
        part = "val" if i < 16 else "test" if i < 32 else "train"
        rows.append({"id": f"c{i:05d}", "audio": str(path), "text": sentence(rng, i),
                     "label": LABELS[i % len(LABELS)], "speaker": f"s{i % 20}", "script": str(i),
                     "duration_s": len(t) / rate_hz, "source_split": "", "part": part})  # fmt: skip
    return write_table(pd.DataFrame(rows), root / "corpus.parquet", list(LABELS))


def korean_tokenizer(vocab_size: int) -> Any:
    """A WordPiece tokenizer over Hangul syllables (word-initial and ``##``), ASCII and
    digits, padded with unused tokens to ``vocab_size`` (the embedding's size)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = [chr(c) for c in range(0xAC00, 0xD7A4)] + [chr(c) for c in range(33, 127)]
    vocab = [*SPECIALS, *pieces, *("##" + p for p in pieces)]
    vocab += [f"[unused{i}]" for i in range(vocab_size - len(vocab))]
    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.ElectraTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]", model_max_length=512,
    )  # fmt: skip


def make_models(root: Path, smoke: bool) -> tuple[Path, Path]:
    """The two checkpoints with random weights (seed 0): the paper's sizes, or tiny ones."""
    import torch
    import transformers

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hf_encoders import KCELECTRA_BASE, WAV2VEC2_LARGE_ROBUST

    speech_config, text_config = dict(WAV2VEC2_LARGE_ROBUST), dict(KCELECTRA_BASE)
    if smoke:
        speech_config.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128, conv_dim=(32,) * 7)  # fmt: skip
        text_config.update(hidden_size=64, embedding_size=64, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=128)  # fmt: skip
    from emofuse.encoders.hf_checkpoint import quiet_transformers

    torch.manual_seed(0)
    speech, text = root / "speech-model", root / "text-model"
    with quiet_transformers():
        speech_model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**speech_config))
        speech_model.save_pretrained(speech)
        transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
            return_attention_mask=True,
        ).save_pretrained(speech)  # fmt: skip
        config = transformers.ElectraConfig(**text_config, pad_token_id=0)
        transformers.ElectraModel(config).save_pretrained(text)
        korean_tokenizer(config.vocab_size).save_pretrained(text)
    return speech, text


# ---- measuring a command in a fresh process ------------------------------------------------
class BusySampler:
    """The GPU's busy percentage sampled every 0.2 s while running, with time stamps."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            smi = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        except OSError:
            smi = None
        if smi is None:
            import torch

            while not self._stop.wait(0.2):
                try:
                    self.samples.append((time.time(), float(torch.cuda.utilization())))
                except Exception:  # no NVML either: no samples
                    return
            return
        assert smi.stdout is not None
        threading.Thread(target=lambda: (self._stop.wait(), smi.terminate()), daemon=True).start()
        for line in smi.stdout:
            if line.strip().split(",")[0].strip().isdigit():
                self.samples.append((time.time(), float(line.split(",")[0])))
        smi.wait()

    def share(self, start: float, end: float) -> str:
        inside = [busy for t, busy in self.samples if start <= t <= end]
        if not inside:
            return "n/a"
        return f"{statistics.mean(inside):.0f} % (range {min(inside):.0f}-{max(inside):.0f})"


def run_child(args: list[str]) -> tuple[dict, float, BusySampler]:
    """Run this script as a child (``--child ...``) on the GPU sampler; its JSON report,
    the wall time at its start, and the samples."""
    started = time.time()
    with BusySampler() as busy:
        done = subprocess.run([sys.executable, __file__, "--child", *args],
                              capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, started, busy


def child_extract(table: str, modality: str, spec: str, store: str, extra: list[str]) -> dict:
    """`emofuse extract` with a clock on every batch (in the child)."""
    import emofuse.features.compute as compute
    from emofuse.cli import main

    marks: list[tuple[float, float]] = []  # (time done, seconds of audio or sentences)
    encode = compute._encode_prepared

    def timed(encoder: Any, batch: Any) -> Any:
        result = encode(encoder, batch)
        if modality != "speech":
            amount = len(batch.ok)
        else:
            amount = batch.inputs.lengths.sum().item() / SR if batch.inputs is not None else 0
        marks.append((time.time(), float(amount)))
        return result

    compute._encode_prepared = timed
    argv = ["extract", table, f"--{modality}", spec, "--store", store, "--no-progress", *extra]
    code = main(argv)
    return {"code": code, "marks": marks, "end": time.time()}


def child_finetune(table: str, speech: str, text: str, steps: int, precision: str) -> dict:
    """`train --finetune` (both models) with a clock on every optimiser step (in the child)."""
    import pandas as pd
    import torch

    from emofuse.finetune.config import FinetuneConfig
    from emofuse.finetune.run import finetune_and_evaluate

    marks: list[float] = []
    step = torch.optim.AdamW.step

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        out = step(self, *a, **k)
        marks.append(time.time())
        return out

    torch.optim.AdamW.step = timed  # type: ignore[method-assign]
    config = FinetuneConfig(batch_size=16, epochs=100, max_steps=steps, mixed_precision=precision,
                            max_audio_s=8.0)  # fmt: skip
    rows = pd.read_parquet(table)
    finetune_and_evaluate(rows, list(LABELS), modality="both", speech=speech, text=text,
                          config=config, progress=False)  # fmt: skip
    return {"marks": [(t, 1.0) for t in marks], "end": time.time()}


def steady(report: dict, started: float) -> dict[str, float]:
    """Start-up (command start to the first batch done) and the rate after it."""
    marks = report["marks"]
    first = marks[0][0]
    after = marks[1:]
    rate = sum(a for _, a in after) / (after[-1][0] - first) if after else float("nan")
    return {"startup_s": first - started, "rate": rate, "wall_s": report["end"] - started,
            "first": first, "last": marks[-1][0]}  # fmt: skip


def gpu_bench(args: argparse.Namespace, root: Path) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no CUDA GPU here: run with --tiny (input pipeline) or --smoke")
    print(f"building models and {args.clips} clips in {root} ...", flush=True)
    speech, text = make_models(root, args.smoke)
    table = str(make_corpus(root / "corpus", args.clips, args.source_rate_hz))
    extra = []
    if args.batch_seconds:
        extra += ["--batch-seconds", str(args.batch_seconds)]
    if args.loader_workers is not None:
        extra += ["--loader-workers", str(args.loader_workers)]
    rows = []
    runs = [("speech", f"{speech}", "bf16 autocast" if device == "cuda" else "float32 (CPU)"),
            ("speech", f"{speech}?autocast=off", "float32"),
            ("text", f"{text}", "bf16 autocast" if device == "cuda" else "float32 (CPU)")]  # fmt: skip
    for n, (modality, spec, precision) in enumerate(runs):
        store = str(root / f"store-{n}")
        report, started, busy = run_child(["extract", table, modality, spec, store, *extra])
        s = steady(report, started)
        unit = "s of audio/s" if modality == "speech" else "sentences/s"
        rate = f"{s['rate']:,.0f} {unit}" if s["rate"] == s["rate"] else "n/a (one batch)"
        rows.append((f"{modality} extraction, {precision}", rate,
                     f"{s['startup_s']:.1f} s", f"{s['wall_s']:.1f} s",
                     busy.share(s["first"], s["last"])))  # fmt: skip
    mixed = "bf16" if device == "cuda" else "no"
    report, started, busy = run_child(
        ["finetune", table, str(speech), str(text), str(args.finetune_steps), mixed]
    )
    s = steady(report, started)
    label = "bf16" if mixed == "bf16" else "float32"
    rows.append((f"fine-tuning both, {label}, batch 16", f"{s['rate']:.2f} steps/s",
                 f"{s['startup_s']:.1f} s", f"{s['wall_s']:.1f} s",
                 busy.share(s["first"], s["last"])))  # fmt: skip
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"\n{name}, {args.clips} clips ({'tiny models' if args.smoke else 'paper sizes'})")
    print(markdown(["what", "steady rate", "to first batch", "whole run", "GPU busy"], rows))


# ---- --tiny: the input pipeline alone --------------------------------------------------------
class NullSpeech:
    """A speech 'model' that does nothing: what is measured is what runs beside it."""

    modality = "speech"
    sample_rate_hz = SR

    def __init__(self) -> None:
        import torch

        self.device = torch.device("cpu")

    def input_plan(self) -> Any:
        from emofuse.encoders.hf_inputs import SpeechInputPlan

        return SpeechInputPlan(SR, min_samples=400, window_samples=30 * SR, long="chunk")

    def encode_prepared(self, prepared: Any) -> np.ndarray:
        return np.zeros((prepared.n_items, 1), dtype=np.float32)

    def load(self) -> None:
        pass


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process (all threads) and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def tiny_bench(args: argparse.Namespace, root: Path) -> None:
    import pandas as pd

    from emofuse.features.batching import BatchLimits, length_batches
    from emofuse.features.loading import prepared_batches

    table = pd.read_parquet(make_corpus(root, args.clips, args.source_rate_hz))
    items = pd.DataFrame({"key": table["id"], "payload": table["audio"],
                          "length": table["duration_s"], "ids": [(i,) for i in table["id"]]})  # fmt: skip
    batches = length_batches(items, BatchLimits(64, args.batch_seconds or 60.0))
    audio_s = float(table["duration_s"].sum())
    model = NullSpeech()
    timings: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(args.repeats):  # alternate the settings: bursts of other work hit each
        for workers in (0, 1, 2):
            wall, (me, kids) = time.perf_counter(), cpu_seconds()
            n = sum(len(b.ok) for b in prepared_batches(model, "speech", batches, workers))
            assert n == len(table)
            me_after, kids_after = cpu_seconds()
            timings.setdefault(str(workers), []).append(
                (time.perf_counter() - wall, me_after - me, kids_after - kids)
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{len(table)} clips of 1.5-8 s ({audio_s:.0f} s of audio) at "
          f"{args.source_rate_hz} Hz -> {SR} Hz, {len(batches)} batches; {os.cpu_count()} cores, "
          f"load average {load:.1f} after the runs; fastest of {args.repeats}")  # fmt: skip
    rows, base, base_capacity = [], 0.0, 0.0
    for workers, name in (("1", "1 loader process"), ("2", "2 loader processes"),
                          ("0", "one reading thread (the CPU default)")):  # fmt: skip
        wall, me, kids = min(timings[workers])  # the fastest run: the least disturbed
        # What a clip costs the readers: the thread's CPU (in this process) or the processes'.
        reader_ms = 1000 * (me if workers == "0" else kids) / len(table)
        capacity = max(1, int(workers)) * 1000 / reader_ms
        rate = len(table) / wall
        if workers == "1":
            base, base_capacity = rate, capacity
        rows.append((name, f"{rate:,.0f}", f"{rate / base:.2f}x", f"{reader_ms:.2f} ms",
                     f"{1000 * me / len(table):.2f} ms", f"{capacity:,.0f}",
                     f"{capacity / base_capacity:.2f}x"))  # fmt: skip
    print(markdown(["input pipeline", "clips/s (wall)", "vs 1 process", "reader CPU per clip",
                    "main process CPU per clip", "clips/s with a core per reader",
                    "vs 1 process"], rows))  # fmt: skip


def markdown(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        kind, rest = argv[1], argv[2:]
        if kind == "extract":
            report = child_extract(rest[0], rest[1], rest[2], rest[3], rest[4:])
        else:
            report = child_finetune(rest[0], rest[1], rest[2], int(rest[3]), rest[4])
        print(json.dumps(report))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="CPU: the input pipeline alone")
    mode.add_argument("--smoke", action="store_true", help="tiny models: check the code path")
    parser.add_argument("--clips", type=int, help="clips (default 3000; --tiny 600; --smoke 48)")
    parser.add_argument("--source-rate-hz", type=int, help="rate of the WAV files "
                        "(default 16000; --tiny 44100, so that every clip is resampled)")  # fmt: skip
    parser.add_argument("--batch-seconds", type=float,
                        help="passed to `emofuse extract` (--tiny: default 60)")  # fmt: skip
    parser.add_argument("--loader-workers", type=int, help="passed to `emofuse extract`")
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="--tiny: runs of each setting")
    args = parser.parse_args(argv)
    args.clips = args.clips or (600 if args.tiny else 48 if args.smoke else 3000)
    args.source_rate_hz = args.source_rate_hz or (44_100 if args.tiny else SR)
    if args.smoke:
        args.finetune_steps = min(args.finetune_steps, 6)
    # Models and clips in a scratch folder, removed at the end (a few GB at full size).
    with tempfile.TemporaryDirectory(prefix="emofuse-gpu-bench-") as scratch:
        if args.tiny:
            tiny_bench(args, Path(scratch))
        else:
            gpu_bench(args, Path(scratch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
