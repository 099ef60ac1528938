"""Grid configs: every shipped config validates, and bad input names the bad key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emofuse.encoders.registry import OFFLINE_SPEECH, OFFLINE_TEXT
from emofuse.experiments.config import (
    GridConfigError,
    grid_config_from_dict,
    load_grid_config,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").rglob("*.toml"))
PAPER_TEXT_ENCODERS = {
    "skt/kobert-base-v1",
    "monologg/koelectra-base-v3-discriminator",
    "klue/bert-base",
    "klue/roberta-small",
    "klue/roberta-large",
    "beomi/KcELECTRA-base-v2022",
}


def test_the_shipped_configs_are_there():
    names = {p.relative_to(REPO / "configs").as_posix() for p in SHIPPED}
    assert {
        "demo.toml",
        "emodb_loso.toml",
        "paper/table3_speech.toml",
        "paper/table4_text.toml",
        "paper/table5_text_encoders.toml",
        "paper/table6_multimodal.toml",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path):
    config = load_grid_config(path, check_corpus=False)
    assert config.base_dir == path.parent.resolve()
    assert config.name


def test_paper_configs_use_the_papers_settings():
    t3 = load_grid_config(REPO / "configs/paper/table3_speech.toml", check_corpus=False)
    assert t3.encoders.speech == ("facebook/wav2vec2-large-robust",)
    assert t3.grid.modalities == ("speech",)
    assert set(t3.grid.orders) == {"random", "shortest", "longest"}
    assert 29_000 <= max(n for n in t3.grid.per_label if n) * 7 <= 30_000
    t5 = load_grid_config(REPO / "configs/paper/table5_text_encoders.toml", check_corpus=False)
    assert set(t5.encoders.text) == PAPER_TEXT_ENCODERS
    t6 = load_grid_config(REPO / "configs/paper/table6_multimodal.toml", check_corpus=False)
    assert t6.grid.modalities == ("both",)
    assert t6.grid.per_label == (50, 100, 200, 300, 400, 500, 1000)
    assert set(t6.grid.orders) == {"shortest", "longest"}
    assert t6.encoders.text == ("beomi/KcELECTRA-base-v2022",)
    for config in (
        t3,
        t5,
        t6,
        load_grid_config(REPO / "configs/paper/table4_text.toml", check_corpus=False),
    ):
        assert (config.train.batch_size, config.train.epochs) == (32, 10)


def test_demo_config_is_offline_and_small():
    demo = load_grid_config(REPO / "configs/demo.toml")
    assert demo.corpus.source == "demo"
    assert demo.encoders.speech == (OFFLINE_SPEECH,)
    assert demo.encoders.text == (OFFLINE_TEXT,)  # the offline defaults, whatever they are
    clips = 7 * demo.corpus.demo_speakers * demo.corpus.demo_scripts_per_emotion
    assert clips <= 300  # offline extraction of ~0.2 s a clip keeps it to a minute or two


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_no_shipped_config_points_outside_the_repository(path: Path):
    config = load_grid_config(path, check_corpus=False)
    source = config.corpus.source
    assert source in ("demo", ""), f"{path.name}: corpus.source {source!r} is not in a user's clone"


@pytest.mark.parametrize("name", ["emodb_loso.toml", "paper/table3_speech.toml"])
def test_a_config_without_its_corpus_says_what_to_pass(name: str):
    with pytest.raises(
        GridConfigError, match=r"corpus\.source: not set; pass the corpus with .*--corpus PATH"
    ):
        load_grid_config(REPO / "configs" / name)


def test_the_corpus_can_be_given_when_loading(tmp_path: Path, monkeypatch):
    (tmp_path / "manifest.csv").write_text("audio,label\n")
    monkeypatch.chdir(tmp_path)
    config = load_grid_config(REPO / "configs/emodb_loso.toml", corpus="manifest.csv")
    # a path from the command line is relative to the working folder, not the config's
    assert config.resolve(config.corpus.source) == (tmp_path / "manifest.csv").resolve()
    assert config.split.strategies == ("logo",)


def test_defaults_and_all():
    config = grid_config_from_dict({"grid": {"per_label": [50, "all"]}})
    assert config.grid.per_label == (50, None)
    assert config.output.jobs == 1


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"gird": {}}, "'gird'"),
        ({"grid": {"per_lable": [5]}}, "per_lable"),
        ({"grid": {"per_label": [0]}}, "grid.per_label[0]"),
        ({"grid": {"per_label": [5, "half"]}}, "grid.per_label[1]"),
        ({"grid": {"per_label": [5, 5]}}, "grid.per_label"),
        ({"grid": {"orders": ["middle"]}}, "grid.orders"),
        ({"grid": {"seeds": [0, "one"]}}, "grid.seeds[1]"),
        ({"grid": {"seeds": []}}, "grid.seeds"),
        ({"grid": {"modalities": ["video"]}}, "grid.modalities"),
        ({"grid": {"text_order_by": "words"}}, "grid.text_order_by"),
        ({"split": {"strategies": ["random"]}}, "split.strategies"),
        ({"split": {"test_size": 0.6, "val_size": 0.5}}, "split.test_size + split.val_size"),
        ({"split": {"k": 1}}, "split.k"),
        ({"encoders": {"text": []}}, "encoders.text"),
        ({"encoders": {"speech": ["egemaps", " "]}}, "encoders.speech[1]"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"dropout": 1.5}}, "train.dropout"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"class_weighting": "yes"}}, "train.class_weighting"),
        ({"train": {"logistic_blend": 2.0}}, "logistic_blend"),
        ({"output": {"jobs": 0}}, "output.jobs"),
        ({"output": {"tables": ["table9"]}}, "output.tables"),
        ({"corpus": {"demo_speakers": 1}}, "corpus.demo_speakers"),
        ({"name": ""}, "name"),
        ({"grid": "all"}, "[grid]"),
    ],
)
def test_bad_configs_name_the_key(raw: dict, named: str):
    with pytest.raises(GridConfigError) as info:
        grid_config_from_dict(raw)
    assert named in str(info.value)


def test_recipe_dependent_train_settings_default_to_the_recipe_and_can_be_set():
    from emofuse.head.config import TrainConfig

    config = grid_config_from_dict({})
    assert config.train.class_weighting is None and config.train.logistic_blend == -1.0
    resolved = TrainConfig(**{**vars(config.train), "seed": 0}).resolved()
    assert resolved.class_weighting is True and resolved.logistic_blend == 0.5
    set_off = grid_config_from_dict({"train": {"class_weighting": False, "logistic_blend": 0}})
    assert set_off.train.class_weighting is False and set_off.train.logistic_blend == 0.0


def test_text_encoders_may_be_empty_for_a_speech_only_grid():
    config = grid_config_from_dict({"grid": {"modalities": ["speech"]}, "encoders": {"text": []}})
    assert config.encoders.text == ()


def test_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(GridConfigError, match="no such config file"):
        load_grid_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[grid\nper_label = 5\n")
    with pytest.raises(GridConfigError, match=r"broken\.toml: not valid TOML"):
        load_grid_config(broken)
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\norders = ["sideways"]\n')
    with pytest.raises(GridConfigError, match=r"bad\.toml: grid\.orders: 'sideways'"):
        load_grid_config(bad)


def test_relative_source_resolves_against_the_config_file(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "grid.toml"
    path.write_text('[corpus]\nsource = "../corpus.parquet"\n')
    # missing: the message names the path it looked for and what to pass
    missing = str((tmp_path / "corpus.parquet").resolve())
    with pytest.raises(
        GridConfigError,
        match=rf"grid\.toml: corpus\.source: {re.escape(missing)} does not exist; pass",
    ):
        load_grid_config(path)
    (tmp_path / "corpus.parquet").write_bytes(b"")
    config = load_grid_config(path)
    assert config.resolve(config.corpus.source) == (tmp_path / "corpus.parquet").resolve()


def test_the_command_says_what_to_pass_when_the_corpus_is_not_set(capsys):
    from emofuse.cli import main

    assert main(["experiment", str(REPO / "configs/emodb_loso.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "emodb_loso.toml: corpus.source: not set" in err and "--corpus PATH" in err
