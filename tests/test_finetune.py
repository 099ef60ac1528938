"""End-to-end fine-tuning on CPU with tiny Hugging Face models (real classes, tiny weights)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.requirements import need_accelerate
from support.tiny_models import make_tiny_text_model, make_tiny_wav2vec2
from test_bundle import LABELS, make_clips

from emofuse.bundle import Bundle
from emofuse.finetune.config import FinetuneConfig
from emofuse.finetune.run import FinetuneError, finetune_and_evaluate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    speech = make_tiny_wav2vec2(root / "speech", attention_mask=True)
    text = make_tiny_text_model(root / "text", kind="electra")
    rows = []
    for part, n, seed in (("train", 3, 1), ("val", 1, 2), ("test", 1, 3)):
        paths, texts, y = make_clips(root / "clips" / part, n, seed=seed)
        rows += [
            {"id": f"{part}-{p.stem}", "audio": str(p), "text": t, "label": LABELS[k], "part": part}
            for p, t, k in zip(paths, texts, y, strict=True)
        ]  # fmt: skip
    return speech, text, pd.DataFrame(rows)


CONFIG = FinetuneConfig(epochs=2, batch_size=4, hidden=8, lr=1e-2, encoder_lr=1e-4, max_audio_s=1.0)


def test_finetune_both_saves_a_portable_bundle_that_matches_the_model(tiny, tmp_path):
    speech, text, table = tiny
    result = finetune_and_evaluate(
        table, LABELS, modality="both", speech=str(speech), text=str(text), config=CONFIG,
        out_dir=tmp_path / "bundle", provenance={"split": "given"}, progress=False,
    )  # fmt: skip
    assert len(result.history) == 2 and "val_uar" in result.history[0]
    # the head's best-epoch rule (emofuse.head.train.run_epochs): highest val UAR, then lower loss
    best = result.history[result.best_epoch - 1]
    assert best["val_uar"] == max(row["val_uar"] for row in result.history)
    assert set(result.history[0]) == {"epoch", "train_loss", "val_loss", "val_uar", "val_accuracy"}
    assert result.metrics["n"] == 3 and result.val_metrics["n"] == 3
    # the encoder itself was trained, not only the head
    from transformers import AutoModel

    original = AutoModel.from_pretrained(speech).state_dict()
    tuned = {k: v.detach().cpu() for k, v in result.model.speech.state_dict().items()}
    changed = [k for k in original if not torch.equal(original[k], tuned[k])]
    assert any("encoder.layers" in k for k in changed)
    assert not any("feature_extractor" in k for k in changed)  # frozen CNN front end

    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["encoders"]["speech"]["spec"].startswith("{bundle}/encoders/speech/model")
    assert config["provenance"]["finetune"]["epochs"] == 2
    assert config["provenance"]["finetune"]["mixed_precision"] != "auto"  # what was used
    moved = shutil.move(tmp_path / "bundle", tmp_path / "elsewhere")  # bundles are portable
    bundle = Bundle.load(moved)
    clip = table[table["part"] == "test"].iloc[0]
    (prediction,) = bundle.predict([clip["audio"]], [clip["text"]])

    from emofuse.audio import load_audio

    item = {
        "wave": load_audio(clip["audio"], 16_000, max_duration_s=1.0),
        "text": clip["text"],
        "label": 0,
    }
    # The fine-tuned model on the CPU; the bundle's encoders run where they find a device.
    # Across devices (CUDA in float32, TF32 off, vs the CPU) we allow 1e-4.
    model = result.model.cpu().eval()
    with torch.no_grad():
        expected = torch.softmax(model(result.collate([item])), dim=1)[0].numpy()
    got = np.array([prediction.probabilities[label] for label in LABELS])
    tolerance = 1e-4 if torch.cuda.is_available() else 1e-5
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=tolerance)


def test_finetune_refuses_feature_encoders_and_missing_models(tiny):
    speech, text, table = tiny
    with pytest.raises(FinetuneError, match="needs a Hugging Face speech model"):
        finetune_and_evaluate(table, LABELS, modality="speech", speech="egemaps", config=CONFIG)
    with pytest.raises(FinetuneError, match="--text MODEL"):
        finetune_and_evaluate(table, LABELS, modality="both", speech=str(speech), config=CONFIG)
    from emofuse.encoders.registry import OFFLINE_TEXT

    for name in (OFFLINE_TEXT, "kiwi-tfidf"):  # every registered text encoder, not a list
        with pytest.raises(FinetuneError, match="needs a Hugging Face text model"):
            finetune_and_evaluate(table, LABELS, modality="text", text=name, config=CONFIG)


@pytest.mark.slow
def test_two_process_accelerate_launch(tiny, tmp_path):
    need_accelerate()
    speech, text, table = tiny
    table.to_csv(tmp_path / "table.csv", index=False)
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, pandas as pd\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from emofuse.finetune.config import FinetuneConfig\n"
        "from emofuse.finetune.run import finetune_and_evaluate\n"
        f"table = pd.read_csv({str(tmp_path / 'table.csv')!r}, keep_default_na=False)\n"
        "config = FinetuneConfig(epochs=1, batch_size=2, hidden=8, max_audio_s=1.0)\n"
        f"r = finetune_and_evaluate(table, {LABELS!r}, modality='speech', speech={str(speech)!r},\n"
        f"    config=config, out_dir={str(tmp_path / 'bundle')!r}, progress=False)\n"
        "import torch.distributed as dist\n"
        # one write per process (print() with several arguments writes them one by one,
        # and the two processes' pieces interleaved on the shared pipe)
        "world = dist.get_world_size() if dist.is_initialized() else 1\n"
        "sys.stdout.write(f\"WORLD {world} TEST_N {r.metrics['n']}\\n\"); sys.stdout.flush()\n"
    )
    launcher = Path(sys.executable).parent / "accelerate"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"))
    # Two CPU ranks, also on a GPU machine: with CUDA hidden, --multi_gpu starts N CPU
    # ranks on gloo (--cpu alone would start one process; on one GPU --multi_gpu fails).
    env["CUDA_VISIBLE_DEVICES"] = ""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
         str(script)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # two ranks, and every test clip counted once (gather_for_metrics drops the padding)
    assert done.stdout.count("WORLD 2 TEST_N 3") == 2, done.stdout
    (prediction,) = Bundle.load(tmp_path / "bundle").predict([table["audio"].iloc[-1]])
    assert prediction.label in LABELS


def test_cli_train_finetune_text(tiny, tmp_path, capsys):
    from emofuse.cli import main
    from emofuse.corpus.table import write_table

    _, text, table = tiny
    full = table.assign(speaker="", script="", duration_s=0.5, source_split="")
    split = write_table(full, tmp_path / "split.parquet", LABELS)
    code = main(
        ["train", str(split), "--modality", "text", "--text", str(text), "--finetune",
         "--store", str(tmp_path / "unused"), "-o", str(tmp_path / "bundle"), "--epochs", "1",
         "--hidden", "8", "--batch-size", "4", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and "bundle written to" in capsys.readouterr().out
    (prediction,) = Bundle.load(tmp_path / "bundle").predict(None, ["오늘은 좋아요 신나요 정말"])
    assert prediction.label in LABELS


def test_length_grouped_order_pads_little_and_differs_by_epoch():
    from emofuse.finetune.batches import LengthGroupedOrder

    lengths = np.random.default_rng(0).uniform(1.5, 8.0, 200)
    order = LengthGroupedOrder(lengths, batch_size=8, seed=3, group_batches=5)
    first, second = list(order), list(order)
    assert sorted(first) == sorted(second) == list(range(200))  # every clip once an epoch
    assert first != second  # a new order each epoch ...
    assert list(LengthGroupedOrder(lengths, 8, seed=3, group_batches=5)) == first  # ... by seed

    def padding(indices: list[int]) -> float:  # seconds of padding over batches of 8
        batches = [lengths[indices[i : i + 8]] for i in range(0, len(indices), 8)]
        return float(sum(b.max() * len(b) - b.sum() for b in batches))

    shuffled = list(np.random.default_rng(1).permutation(200))
    assert padding(first) < 0.3 * padding(shuffled)
    longest_first = list(LengthGroupedOrder(lengths, 8, shuffle=False))
    assert list(lengths[longest_first]) == sorted(lengths, reverse=True)


def test_mixed_precision_auto_is_bf16_only_on_a_cuda_gpu_that_has_it():
    from emofuse.finetune.config import FinetuneConfig

    auto = FinetuneConfig()
    assert auto.mixed_precision == "auto"
    assert auto.resolved(cuda=True, bf16_supported=True).mixed_precision == "bf16"
    assert auto.resolved(cuda=True, bf16_supported=False).mixed_precision == "no"
    assert auto.resolved(cuda=False, bf16_supported=False).mixed_precision == "no"
    forced_cpu = FinetuneConfig(cpu=True)
    assert forced_cpu.resolved(cuda=True, bf16_supported=True).mixed_precision == "no"
    chosen = FinetuneConfig(mixed_precision="fp16")
    assert chosen.resolved(cuda=True, bf16_supported=True).mixed_precision == "fp16"
