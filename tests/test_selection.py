"""The default recipe's model selection (emofuse.head.selection, .cv, .speaker_choice)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from emofuse.head import selection as sel
from emofuse.head.config import TrainConfig
from emofuse.head.cv import cv_folds, logistic_path, score
from emofuse.head.logistic import fit_logistic
from emofuse.head.train import fit_head

FAST = TrainConfig(min_steps=30, epochs=2, hidden=16)


def _data(n_speakers=6, per=30, dim=8, k=3, speaker_spread=0.0, seed=0):
    """Classes separated along a few dimensions; each speaker shifts every dimension."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1.5, (k, dim))
    who = np.repeat(np.arange(n_speakers), per)
    y = rng.integers(0, k, len(who))
    shift = rng.normal(0, speaker_spread, (n_speakers, dim))
    x = centres[y] + shift[who] + rng.normal(0, 1.0, (len(who), dim))
    return x.astype(np.float32), y, np.array([f"spk{i}" for i in who], dtype=object)


def test_folds_are_grouped_by_speaker_then_script_then_stratified():
    y = np.arange(40) % 4
    speakers = np.repeat(["a", "b", "c", "d", "e", "f", "g", "h"], 5)
    folds, scheme = cv_folds(y, speakers, max_folds=5, seed=0)
    assert scheme == "speaker" and folds.max() == 4
    for name in set(speakers):
        assert len(set(folds[speakers == name])) == 1
    assert np.array_equal(folds, cv_folds(y, speakers, max_folds=5, seed=0)[0])
    # two speakers are not enough: scripts, then classes
    two = np.repeat(["a", "b"], 20)
    scripts = np.tile(np.arange(10), 4)
    assert cv_folds(y, two, scripts, seed=0)[1] == "script"
    folds, scheme = cv_folds(y, two, seed=0)
    assert scheme == "stratified" and folds.max() == 4
    # blank speaker names: each row its own group
    blanks = speakers.astype(object)
    blanks[:5] = ""
    folds, scheme = cv_folds(y, blanks, seed=0)
    assert scheme == "speaker" and len(set(folds[:5])) > 1


def test_logistic_path_agrees_with_the_exact_fit():
    x, y, _ = _data()
    xs = (x - x.mean(0)) / x.std(0)
    path = logistic_path(xs, y, 3, (0.01, 1.0))
    for c, (weight, bias) in path.items():
        exact_w, exact_b = fit_logistic(xs, y, 3, c=c, balanced=True)
        np.testing.assert_array_equal(
            (xs @ weight.T + bias).argmax(1), (xs @ exact_w.T + exact_b).argmax(1)
        )
        np.testing.assert_allclose(weight, exact_w, atol=5e-3)


def test_candidates_pick_the_clearly_better_one_and_the_logistic_model_holds_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    noise = {("all", 0): rng.normal(size=(90, 3))}
    perfect = {("all", 0): np.eye(3)[y] * 10}
    lr = {c: noise for c in sel.C_GRID}
    lr[0.01] = perfect
    loud = {("all", 0): noise[("all", 0)] * 1000}  # an MLP that is loud and wrong
    names = {c["name"]: c for c in sel._candidates(y, 3, loud, lr, 1.0)}
    winner = sel.choose(list(names.values()))
    assert winner["name"] == "logistic C=0.01" and winner["uar"] == 1.0
    assert "mlp+logistic w=0.75 C=0.01" in names  # blends with the best C are scored
    # a perfect MLP beats every logistic regression: it wins
    mlp_wins = sel.choose(sel._candidates(y, 3, perfect, {c: noise for c in sel.C_GRID}, 1.0))
    assert mlp_wins["name"] == sel.DEFAULT_NAME and mlp_wins["uar"] == 1.0
    assert score(y, perfect, 3) == {"uar": 1.0, "by_view": {"all": 1.0}}


def test_the_rule_needs_a_margin_to_leave_the_logistic_regression():
    def cand(name, blend, uar):
        return {"name": name, "blend": blend, "c": 1.0, "uar": uar}

    lr, lr_small = cand("logistic C=1", 1.0, 0.70), cand("logistic C=0.01", 1.0, 0.70)
    close, far = cand("mlp", 0.0, 0.70 + sel.LR_MARGIN / 2), cand("mlp", 0.0, 0.72)
    assert sel.choose([close, lr_small, lr]) is lr_small  # within the margin; ties: first
    assert sel.choose([far, lr_small, lr]) is far


def test_candidate_configs_train_in_todays_format():
    base = TrainConfig().resolved()
    pure = sel.candidate_config(base, 1.0, 0.03)
    assert (pure.head, pure.logistic_blend, pure.logistic_c) == ("linear", 1.0, 0.03)
    blend = sel.candidate_config(base, 0.25, 0.1)
    assert (blend.head, blend.logistic_blend) == ("mlp+linear", 0.25)
    x, y, _ = _data(per=10)
    head = fit_head(x, y, n_classes=3, config=sel.candidate_config(FAST, 1.0, 0.03), progress=False)
    with torch.no_grad():
        xs = head.standardizer(torch.from_numpy(x)).numpy()
    weight, bias = fit_logistic(xs, y, 3, c=0.03, balanced=True)
    np.testing.assert_allclose(head.head.fc2.weight.detach().numpy(), weight, atol=1e-5)


def test_select_head_record_is_json_and_deterministic():
    x, y, speakers = _data()
    first = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers)
    second = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers)
    record = json.loads(json.dumps(first.record))
    assert record["scheme"] == "speaker" and record["folds"] == 5
    assert record["speaker_norm"]["decision"] == "off"
    assert {c["name"] for c in record["candidates"]} >= {sel.DEFAULT_NAME, "logistic C=1"}
    assert record["choice"] in {c["name"] for c in record["candidates"]}
    for a, b in zip(first.record["candidates"], second.record["candidates"], strict=True):
        assert a["uar"] == b["uar"]
    assert first.config == second.config and first.k is None
    head, norm = sel.fit_selected(first, x, y, n_classes=3, speakers_train=speakers)
    assert norm is None and head.predict(x).shape == (len(y),)


def test_the_winner_is_calibrated_on_its_out_of_fold_logits():
    """The temperature minimises the winner's out-of-fold NLL, is applied to the trained
    head (labels unchanged), gives fresh rows of the same speakers' kind a lower NLL than
    the raw logits, and leaves a model calibrated on val alone."""
    from emofuse.head.calibration import softmax

    x, y, speakers = _data(n_speakers=8, per=40, speaker_spread=0.5)
    choice = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers)
    assert choice.temperature == pytest.approx(choice.record["temperature"], abs=1e-4)
    assert choice.temperature != 1.0
    head, _ = sel.fit_selected(choice, x, y, n_classes=3, speakers_train=speakers)
    assert head.temperature == choice.temperature
    x_new, y_new, _ = _data(n_speakers=8, per=40, speaker_spread=0.5, seed=5)
    logits = head.logits(x_new)
    np.testing.assert_allclose(head.predict_proba(x_new), softmax(logits, head.temperature),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert np.array_equal(head.predict(x_new), logits.argmax(1))

    def nll(proba):
        return float(-np.log(proba[np.arange(len(y_new)), y_new]).mean())

    assert nll(softmax(logits, head.temperature)) < nll(softmax(logits))
    # --calibrate with a val part: the val temperature, not the CV one
    on_val = replace(choice, config=replace(choice.config, calibrate=True))
    head_val, _ = sel.fit_selected(on_val, x[:200], y[:200], x[200:], y[200:], n_classes=3,
                                   speakers_train=speakers[:200], speakers_val=speakers[200:])  # fmt: skip
    assert head_val.temperature != choice.temperature


def test_paper_recipe_and_tiny_tables_keep_the_default():
    x, y, speakers = _data(per=2)
    paper = sel.select_head(x, y, n_classes=3, config=TrainConfig(recipe="paper"))
    assert "paper" in paper.record["skipped"] and paper.config.recipe == "paper"
    one_class = sel.select_head(x, np.zeros(len(y), int), n_classes=3, config=FAST)
    assert "too few" in one_class.record["skipped"]
    with pytest.raises(ValueError, match="speaker_norm"):
        sel.select_head(x, y, n_classes=3, speaker_norm="sometimes")


def test_auto_speaker_norm_switches_on_for_speaker_shifted_data_and_fits_state():
    x, y, speakers = _data(n_speakers=6, per=30, speaker_spread=3.0)
    choice = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers,
                             speaker_norm="auto")  # fmt: skip
    record = json.loads(json.dumps(choice.record))["speaker_norm"]
    assert record["decision"] == "on", record["reason"]
    assert set(record["scores"]) == {"off", "k=10", "k=30", "k=100"}
    assert set(record["scores"]["k=10"]["by_view"]) == {"3", "5", "10", "all", "skew"}
    assert choice.k == record["k"] and choice.columns == (0, 8)
    head, norm = sel.fit_selected(
        choice, x[:150], y[:150], x[150:], y[150:], n_classes=3,
        speakers_train=speakers[:150], speakers_val=speakers[150:],
    )  # fmt: skip
    assert norm is not None and norm.k == choice.k and norm.composition is not None
    assert norm.info["decision"] == "on"
    moments = norm.moments(x[speakers == "spk0"][:3])
    assert np.isfinite(head.predict_proba(norm.transform(x[speakers == "spk0"], moments))).all()


def test_auto_needs_four_speakers_and_text_models_stay_off():
    x, y, speakers = _data(n_speakers=3, per=30, speaker_spread=3.0)
    few = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers, speaker_norm="auto")
    assert few.record["speaker_norm"]["decision"] == "off" and few.k is None
    assert "needs 4" in few.record["speaker_norm"]["reason"]
    text = sel.select_head(x, y, n_classes=3, config=FAST, speakers=speakers,
                           speaker_norm="on", input_dims={"text": 8})  # fmt: skip
    assert "text-only" in text.record["speaker_norm"]["reason"]
