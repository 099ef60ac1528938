"""`emofuse train` flags: generated from TrainConfig and FinetuneConfig, each kind of
training with its own defaults, and a flag of the other kind refused, never ignored."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest
from support.toy_encoders import make_corpus

from emofuse.cli import main
from emofuse.cli.config_flags import add_config_flags, config_from_args
from emofuse.finetune.config import FinetuneConfig


@pytest.fixture
def split(tmp_path):
    from emofuse.corpus.table import write_table

    return write_table(make_corpus(tmp_path / "corpus", n=6), tmp_path / "split.parquet")


@pytest.fixture
def captured(monkeypatch):
    """Stand in for fine-tuning itself: record the config `train --finetune` passes."""
    import emofuse.finetune.run

    calls = []

    def fake(table, labels, *, config, **kwargs):
        calls.append(config)
        return emofuse.finetune.run.FinetuneResult(None, None, None, [], 1)

    monkeypatch.setattr(emofuse.finetune.run, "finetune_and_evaluate", fake)
    return calls


def test_finetune_gets_its_own_defaults_and_flags_without_a_store(split, tmp_path, captured):
    """--finetune used the head's batch size (32) and epochs (10) and needed --store."""
    argv = ["train", str(split), "--modality", "text", "--text", "some/model", "--finetune"]
    assert main([*argv, "-o", str(tmp_path / "b")]) == 0
    assert captured[-1] == FinetuneConfig()
    assert (captured[-1].batch_size, captured[-1].epochs) == (8, 3)

    flags = ["--epochs", "2", "--encoder-lr", "1e-4", "--mixed-precision", "bf16",
             "--gradient-accumulation-steps", "4", "--max-steps", "7",
             "--no-freeze-feature-encoder", "--cpu"]  # fmt: skip
    assert main([*argv, "-o", str(tmp_path / "b"), *flags]) == 0
    assert captured[-1] == FinetuneConfig(
        epochs=2, encoder_lr=1e-4, mixed_precision="bf16", gradient_accumulation_steps=4,
        max_steps=7, freeze_feature_encoder=False, cpu=True,
    )  # fmt: skip


def test_a_flag_of_the_other_kind_of_training_is_refused(split, tmp_path, captured, capsys):
    base = ["train", str(split), "--modality", "text", "-o", str(tmp_path / "b")]
    assert main([*base, "--finetune", "--class-weighting"]) == 2
    assert main([*base, "--store", str(tmp_path / "s"), "--encoder-lr", "1e-4"]) == 2
    assert main(base) == 2  # the head reads stored features: --store is needed
    assert main([*base, "--finetune", "--epochs", "0"]) == 2
    errors = capsys.readouterr().err
    assert "--class-weighting applies only without --finetune" in errors
    assert "--encoder-lr applies only with --finetune" in errors
    assert "--store DIR is required" in errors
    assert "epochs must be >= 1" in errors
    assert captured == []


@dataclass
class Knobs:
    count: int = field(default=3, metadata={"help": "how many"})
    rate: float = field(default=0.5, metadata={"help": "how fast"})
    limit: int | None = field(default=None, metadata={"help": "up to"})
    mode: str = field(default="a", metadata={"help": "which", "choices": ("a", "b")})
    on: bool = field(default=True, metadata={"help": "switch"})


def test_flags_come_from_the_dataclass():
    parser = argparse.ArgumentParser()
    assert add_config_flags(parser, Knobs) == [f.name for f in dataclasses.fields(Knobs)]
    assert config_from_args(Knobs, parser.parse_args([])) == Knobs()
    args = parser.parse_args(["--count", "5", "--limit", "9", "--mode", "b", "--no-on"])
    assert config_from_args(Knobs, args) == Knobs(count=5, limit=9, mode="b", on=False)
    assert config_from_args(Knobs, parser.parse_args(["--limit", "none"])).limit is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])
    assert "how fast (default: 0.5)" in parser.format_help()


def test_the_encoder_defaults_in_the_help_are_the_registrys(monkeypatch, capsys):
    import emofuse.cli.train as cli_train

    monkeypatch.setattr(cli_train, "OFFLINE_TEXT", "some-text-default")
    monkeypatch.setattr(cli_train, "OFFLINE_SPEECH", "some-speech-default")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: some-text-default)" in shown
    assert "(default: some-speech-default)" in shown


def test_provenance_says_why_the_leakage_figures_are_missing(monkeypatch, split):
    import emofuse.splits
    from emofuse.cli.train import _provenance
    from emofuse.corpus.table import read_table

    table, _ = read_table(split)
    args = argparse.Namespace(split=split, split_strategy="speaker", split_seed=0)
    assert set(_provenance(args, table)["leakage"]) == {"shared_speakers", "shared_texts"}

    def broken(table):
        raise emofuse.splits.SplitError("no 'part' column to report on")

    monkeypatch.setattr(emofuse.splits, "leakage_report", broken)
    assert _provenance(args, table)["leakage"] == {
        "omitted": "SplitError: no 'part' column to report on"
    }

    def bug(table):
        raise RuntimeError("a bug")

    monkeypatch.setattr(emofuse.splits, "leakage_report", bug)
    with pytest.raises(RuntimeError):  # a bug is not hidden as "best effort"
        _provenance(args, table)
