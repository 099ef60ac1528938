"""Speed of the paper's Hugging Face encoders, measured with random weights.

Speed does not depend on the weights, so the full-size architectures are built from
their configurations (written below, nothing is downloaded) and timed on this machine:

  * wav2vec2-large-robust (speech): seconds of audio encoded per second;
  * KcELECTRA-base (text): sentences per second;
  * FLOPs of one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode``
    (matrix products, convolutions and attention; element-wise ops, norms and
    activations are not counted, a few per cent), from which the time for the whole
    corpus on a GPU is estimated against a peak throughput and a utilisation;
  * length-grouped vs unsorted batching through the real ``HFSpeechEncoder`` with a
    mid-size random model (the padding a batch of mixed lengths wastes).

The same script runs unchanged on a GPU: ``--device cuda --dtype bf16``.

    python bench/hf_encoders.py                  # ~2-3 minutes on 2 CPU cores
    python bench/hf_encoders.py --skip-large     # only the grouping comparison
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from emofuse.encoders.hf_checkpoint import quiet_transformers

SR = 16_000

#: facebook/wav2vec2-large-robust's config.json (architecture fields).
WAV2VEC2_LARGE_ROBUST = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    conv_dim=(512,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_bias=True,
    feat_extract_norm="layer",
    feat_extract_activation="gelu",
    do_stable_layer_norm=True,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    layer_norm_eps=1e-5,
    vocab_size=32,
)

#: beomi/KcELECTRA-base-v2022's discriminator (ELECTRA-base with a 54k Korean vocabulary).
KCELECTRA_BASE = dict(
    vocab_size=54343,
    embedding_size=768,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)

#: A mid-size wav2vec2 for the batching test: large-robust's feature-encoder geometry
#: (kernels, strides, so the same frames per second), narrower and shallower.
MID_SPEECH = dict(
    WAV2VEC2_LARGE_ROBUST,
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    conv_dim=(128,) * 7,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def count_flops(fn: Callable[[], object]) -> int:
    # no_grad, not inference_mode: the weight-norm parametrisation of wav2vec2's
    # positional convolution fails under FlopCounterMode + inference_mode.
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def random_model(
    cls: Any, config: Any, device: torch.device, dtype: torch.dtype
) -> tuple[torch.nn.Module, int]:
    """A randomly initialised (seed 0) model on ``device`` in eval mode, and its size."""
    torch.manual_seed(0)
    with quiet_transformers():
        model = cls(config)
    model = model.to(device=device, dtype=dtype).eval()
    return model, sum(p.numel() for p in model.parameters())


def bench_speech(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    config = transformers.Wav2Vec2Config(**WAV2VEC2_LARGE_ROBUST)
    model, params = random_model(transformers.Wav2Vec2Model, config, device, dtype)
    samples = int(args.clip_s * SR)
    values = torch.randn(args.speech_batch, samples, device=device, dtype=dtype)
    mask = torch.ones(args.speech_batch, samples, dtype=torch.long, device=device)

    def run(batch: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return model(batch, attention_mask=attention).last_hidden_state.float().mean(1)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return run(values, mask)

    one = torch.randn(1, int(args.mean_clip_s * SR), device=device, dtype=dtype)
    flops_clip = count_flops(lambda: run(one, torch.ones_like(one, dtype=torch.long)))
    seconds = timed(forward, device, args.repeats)
    audio_s = args.speech_batch * args.clip_s
    return {
        "params_m": params / 1e6,
        "flops_per_clip": flops_clip,
        "flops_per_audio_s": flops_clip / args.mean_clip_s,
        "batch_s": seconds,
        "audio_s_per_s": audio_s / seconds,
        "achieved_gflops": flops_clip / args.mean_clip_s * audio_s / seconds / 1e9,
    }


def bench_text(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    config = transformers.ElectraConfig(**KCELECTRA_BASE)
    model, params = random_model(transformers.ElectraModel, config, device, dtype)
    ids = torch.randint(
        5, KCELECTRA_BASE["vocab_size"], (args.text_batch, args.text_tokens), device=device
    )
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)

    def run(batch: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return model(input_ids=batch, attention_mask=attention).last_hidden_state[:, 0].float()

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return run(ids, mask)

    flops_sentence = count_flops(lambda: run(ids[:1], mask[:1]))
    seconds = timed(forward, device, args.repeats)
    return {
        "params_m": params / 1e6,
        "flops_per_sentence": flops_sentence,
        "batch_s": seconds,
        "sentences_per_s": args.text_batch / seconds,
        "achieved_gflops": flops_sentence * args.text_batch / seconds / 1e9,
    }


def bench_grouping(args: argparse.Namespace, device: torch.device, dtype_name: str) -> dict:
    """Unsorted vs length-sorted batches through the real HFSpeechEncoder."""
    from emofuse.encoders import build_encoder

    rng = np.random.default_rng(0)
    durations = rng.uniform(1.0, 8.0, args.group_clips)
    clips = [(0.1 * rng.standard_normal(int(d * SR))).astype(np.float32) for d in durations]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, quiet_transformers():
        transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**MID_SPEECH)).save_pretrained(tmp)
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp)
        encoder = build_encoder(f"{tmp}?device={device}&dtype={dtype_name}", "speech")
        encoder.encode(clips[:2])  # load + warm up

        def run(order: np.ndarray) -> tuple[float, float]:
            padded = 0
            start = time.perf_counter()
            for i in range(0, len(order), args.group_batch):
                batch = [clips[j] for j in order[i : i + args.group_batch]]
                encoder.encode(batch)
                padded += max(c.size for c in batch) * len(batch)
            sync(device)
            return time.perf_counter() - start, padded / sum(c.size for c in clips)

        # Alternate the two orders and keep each one's fastest pass: on a shared machine
        # a burst of someone else's work then cannot land on one order only.
        unsorted_times, sorted_times = [], []
        for _ in range(max(1, args.repeats)):
            unsorted_s, unsorted_pad = run(np.arange(len(clips)))
            sorted_s, sorted_pad = run(np.argsort(durations))
            unsorted_times.append(unsorted_s)
            sorted_times.append(sorted_s)
        unsorted_s, sorted_s = min(unsorted_times), min(sorted_times)
    return {
        "clips": len(clips),
        "audio_s": float(durations.sum()),
        "unsorted_s": unsorted_s,
        "sorted_s": sorted_s,
        "unsorted_padding": unsorted_pad,
        "sorted_padding": sorted_pad,
        "speedup": unsorted_s / sorted_s,
    }


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions (median)")
    parser.add_argument("--speech-batch", type=int, default=2)
    parser.add_argument("--clip-s", type=float, default=3.0, help="clip length timed")
    parser.add_argument("--text-batch", type=int, default=16)
    parser.add_argument(
        "--text-tokens", type=int, default=32, help="tokens per sentence incl. [CLS]/[SEP]"
    )
    parser.add_argument("--group-clips", type=int, default=24)
    parser.add_argument("--group-batch", type=int, default=8)
    parser.add_argument("--corpus-clips", type=int, default=450_000)
    parser.add_argument("--mean-clip-s", type=float, default=3.0)
    parser.add_argument(
        "--peak-tflops", type=float, default=100.0, help="GPU peak for the estimate"
    )
    parser.add_argument("--utilisation", type=float, default=0.4)
    parser.add_argument("--skip-large", action="store_true", help="skip the full-size models")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    if dtype == torch.float16 and device.type == "cpu":
        parser.error("fp16 needs a GPU; use --dtype bf16 or fp32 on the CPU")
    dtype_name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[args.dtype]
    print(
        f"device {device}, dtype {args.dtype}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}",
        flush=True,
    )
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    effective = args.peak_tflops * 1e12 * args.utilisation
    corpus_audio_s = args.corpus_clips * args.mean_clip_s

    if not args.skip_large:
        print("\nwav2vec2-large-robust (random weights) ...", flush=True)
        s = bench_speech(args, device, dtype)
        cpu_corpus = corpus_audio_s / s["audio_s_per_s"]
        gpu_corpus = s["flops_per_audio_s"] * corpus_audio_s / effective
        print(
            table(
                [
                    ("parameters", f"{s['params_m']:.0f} M"),
                    (
                        "FLOPs per clip",
                        f"{s['flops_per_clip'] / 1e9:.1f} GFLOP ({args.mean_clip_s:g} s clip)",
                    ),
                    ("FLOPs per audio second", f"{s['flops_per_audio_s'] / 1e9:.1f} GFLOP"),
                    (f"batch {args.speech_batch} x {args.clip_s:g} s", f"{s['batch_s']:.2f} s"),
                    ("audio seconds per second", f"{s['audio_s_per_s']:.2f}"),
                    ("achieved", f"{s['achieved_gflops']:.0f} GFLOP/s"),
                    (
                        f"corpus ({args.corpus_clips:,} x {args.mean_clip_s:g} s) here",
                        human_time(cpu_corpus),
                    ),
                    (
                        f"corpus on a GPU at {args.peak_tflops:g} TFLOP/s x {args.utilisation:.0%}",
                        human_time(gpu_corpus),
                    ),
                ]
            ),
            flush=True,
        )

        print("\nKcELECTRA-base (random weights) ...", flush=True)
        t = bench_text(args, device, dtype)
        cpu_text = args.corpus_clips / t["sentences_per_s"]
        gpu_text = t["flops_per_sentence"] * args.corpus_clips / effective
        print(
            table(
                [
                    ("parameters", f"{t['params_m']:.0f} M"),
                    (
                        "FLOPs per sentence",
                        f"{t['flops_per_sentence'] / 1e9:.2f} GFLOP ({args.text_tokens} tokens)",
                    ),
                    (
                        f"batch {args.text_batch} x {args.text_tokens} tokens",
                        f"{t['batch_s']:.2f} s",
                    ),
                    ("sentences per second", f"{t['sentences_per_s']:.1f}"),
                    ("achieved", f"{t['achieved_gflops']:.0f} GFLOP/s"),
                    (
                        f"{args.corpus_clips:,} sentences here (before de-duplication)",
                        human_time(cpu_text),
                    ),
                    (
                        f"{args.corpus_clips:,} sentences on a GPU at {args.peak_tflops:g} TFLOP/s x "
                        f"{args.utilisation:.0%}",
                        human_time(gpu_text),
                    ),
                ]
            ),
            flush=True,
        )

    print(
        f"\nbatching: {args.group_clips} clips of 1-8 s, batch {args.group_batch}, "
        "mid-size wav2vec2 through HFSpeechEncoder ...",
        flush=True,
    )
    g = bench_grouping(args, device, dtype_name)
    print(
        table(
            [
                ("audio", f"{g['audio_s']:.0f} s in {g['clips']} clips"),
                (
                    "unsorted (best pass)",
                    f"{g['unsorted_s']:.2f} s (padded samples / real {g['unsorted_padding']:.2f})",
                ),
                (
                    "length-sorted (best pass)",
                    f"{g['sorted_s']:.2f} s (padded samples / real {g['sorted_padding']:.2f})",
                ),
                ("speed-up from grouping", f"{g['speedup']:.2f}x"),
            ]
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
