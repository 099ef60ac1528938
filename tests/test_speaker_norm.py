"""Speaker statistics (emofuse.head.speaker_stats) and speaker-adaptive normalisation with
shrinkage (emofuse.head.speaker_norm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emofuse.head.speaker_norm import Composition, SpeakerNorm
from emofuse.head.speaker_stats import (
    Moments,
    draw_without_replacement,
    is_blank,
    pooled,
    speaker_moments,
)


def _speakers(n_speakers=5, per=40, dim=6, seed=0, text_dim=0):
    """Rows whose speech block is offset and scaled per speaker, plus text columns."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 5, (n_speakers, dim))
    scales = rng.uniform(0.5, 2.0, (n_speakers, dim))
    names = np.repeat([f"s{i}" for i in range(n_speakers)], per)
    who = np.repeat(np.arange(n_speakers), per)
    speech = offsets[who] + scales[who] * rng.normal(0, 1, (len(who), dim))
    text = rng.normal(0, 1, (len(who), text_dim))
    return np.hstack([speech, text]).astype(np.float32), names


def test_running_moments_equal_batch_moments():
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, (101, 4)) * [1, 10, 100, 1000]
    running = Moments.empty(4)
    for start in range(0, 101, 7):
        running.add(x[start : start + 7])
    batch = Moments.of(x)
    assert running.count == batch.count == 101
    np.testing.assert_allclose(running.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running.variance, x.var(axis=0), rtol=1e-10)
    np.testing.assert_allclose(batch.variance, x.var(axis=0), rtol=1e-10)
    # merging with nothing changes nothing; one row has no spread
    assert batch.merge(Moments.empty(4)).count == 101
    assert (Moments.of(x[:1]).variance == 0).all()
    with pytest.raises(ValueError, match="cannot merge"):
        batch.merge(Moments.empty(3))
    again = Moments.from_dict(json.loads(json.dumps(batch.to_dict())))
    np.testing.assert_allclose(again.mean, batch.mean)


def test_speaker_moments_skip_blank_names_and_accumulate_over_chunks():
    x = np.arange(12, dtype=float).reshape(6, 2)
    names = ["a", "", None, float("nan"), "  ", "a"]
    assert [is_blank(n) for n in names] == [False, True, True, True, True, False]
    stats = speaker_moments(x, names)
    assert list(stats) == ["a"] and stats["a"].count == 2
    chunked = speaker_moments(x[:3], names[:3])
    speaker_moments(x[3:], names[3:], into=chunked)
    np.testing.assert_allclose(chunked["a"].mean, stats["a"].mean)
    with pytest.raises(ValueError, match="speaker names"):
        speaker_moments(x, names[:2])


def test_draws_are_distinct_and_in_range():
    picks = draw_without_replacement(np.random.default_rng(0), 5, 3, 400)
    assert picks.shape == (400, 3) and picks.min() >= 0 and picks.max() < 5
    assert all(len(set(row)) == 3 for row in picks.tolist())
    assert len({tuple(sorted(r)) for r in picks.tolist()}) == 10  # every subset appears


def test_k_zero_is_per_speaker_z_scoring_and_k_infinite_is_identity():
    x, names = _speakers(text_dim=3)
    norm = SpeakerNorm.fit(x, names, k=0.0, stop=6)
    out = norm.transform_groups(x, names)
    np.testing.assert_array_equal(out[:, 6:], x[:, 6:])  # text columns untouched
    for name in set(names):
        block = out[names == name, :6].astype(float)
        np.testing.assert_allclose(block.mean(axis=0), norm.mean, atol=1e-3)
        np.testing.assert_allclose(block.std(axis=0), norm.scale, rtol=1e-3)
    for k in (np.inf, 1e12):
        far = SpeakerNorm.fit(x, names, k=k, stop=6)
        np.testing.assert_allclose(far.transform_groups(x, names), x, atol=1e-3)


def test_shrinkage_moves_between_global_and_speaker_statistics():
    x, names = _speakers()
    norm = SpeakerNorm.fit(x, names, k=10.0)
    moments = Moments.of(x[names == "s0"])  # 40 clips
    mean, _ = norm.speaker_params(moments)
    expected = (40 * moments.mean + 10 * norm.mean) / 50
    np.testing.assert_allclose(mean, expected)
    # fewer clips: closer to the training set's mean
    few_mean, _ = norm.speaker_params(Moments.of(x[names == "s0"][:3]))
    assert np.abs(few_mean - norm.mean).sum() < np.abs(mean - norm.mean).sum()
    # no statistics at all: the training set's, and the rows unchanged
    np.testing.assert_allclose(norm.speaker_params(None)[0], norm.mean)
    np.testing.assert_array_equal(norm.transform(x[:4], None), x[:4])
    mean_only = SpeakerNorm.fit(x, names, k=10.0, shrink_scale=False)
    np.testing.assert_allclose(mean_only.speaker_params(moments)[1], mean_only.scale)


def test_one_clip_speaker_and_constant_dimensions_stay_finite():
    x, names = _speakers(n_speakers=4, per=10)
    x[:, 2] = 7.0  # constant everywhere
    norm = SpeakerNorm.fit(x, names, k=0.0)
    assert norm.scale[2] == 1.0
    one = norm.transform(x[:1], Moments.of(x[:1]))  # variance 0: the scale floor holds
    assert np.isfinite(one).all()
    out = norm.transform_groups(np.vstack([x, x[:1]]), [*names, "lonely"])
    assert np.isfinite(out).all()


def test_blank_speakers_are_left_alone_and_do_not_count():
    x, names = _speakers(n_speakers=4, per=10)
    names = names.astype(object)
    names[:10] = ""
    norm = SpeakerNorm.fit(x, names, k=3.0)
    out = norm.transform_groups(x, names)
    np.testing.assert_array_equal(out[:10], x[:10])
    assert not np.allclose(out[10:], x[10:])
    rows, index = norm.training_rows(x, names, few=3, seed=0)
    np.testing.assert_array_equal(rows[:10], x[:10])
    np.testing.assert_array_equal(rows[40:50], x[:10])
    with pytest.raises(ValueError, match="speaker names"):
        norm.transform_groups(x, names[:5])


def test_training_rows_full_copy_then_few_clip_copy_deterministic():
    x, names = _speakers(n_speakers=4, per=12)
    norm = SpeakerNorm.fit(x, names, k=10.0)
    rows, index = norm.training_rows(x, names, few=3, seed=5)
    assert rows.shape == (2 * len(x), x.shape[1])
    np.testing.assert_array_equal(index, np.concatenate([np.arange(len(x))] * 2))
    np.testing.assert_allclose(rows[: len(x)], norm.transform_groups(x, names), atol=1e-6)
    assert not np.allclose(rows[len(x) :], rows[: len(x)])
    again, _ = norm.training_rows(x, names, few=3, seed=5)
    np.testing.assert_array_equal(rows, again)
    other, _ = norm.training_rows(x, names, few=3, seed=6)
    assert not np.array_equal(rows, other)


def _composition_data(seed=0):
    """Two classes that move dimension 0 by +-2 within every speaker; speakers move both
    dimensions; the classifier reads dimension 0 through the speaker (as a real one)."""
    rng = np.random.default_rng(seed)
    n_speakers, per = 6, 40
    who = np.repeat(np.arange(n_speakers), per)
    y = np.tile(np.repeat([0, 1], per // 2), n_speakers)
    speaker_offset = rng.normal(0, 1, (n_speakers, 2))
    x = speaker_offset[who] + np.c_[np.where(y == 1, 2.0, -2.0), np.zeros(len(y))]
    x = x + rng.normal(0, 0.3, x.shape)
    return x, y, np.array([f"s{i}" for i in who]), speaker_offset


def test_composition_correction_undoes_an_emotion_skewed_speaker():
    x, y, names, offsets = _composition_data()
    offsets_by_class = Composition.class_offsets(x, y, names, 2)
    np.testing.assert_allclose(offsets_by_class[:, 0], [-2, 2], atol=0.1)
    scorer = Composition(
        weight=np.array([[-5.0, 0.0], [5.0, 0.0]]), bias=np.zeros(2),
        x_mean=np.zeros(2), x_scale=np.ones(2), offsets=offsets_by_class,
    )  # fmt: skip
    plain = SpeakerNorm.fit(x, names, k=0.0)
    corrected = SpeakerNorm.fit(x, names, k=0.0, composition=scorer)
    angry_only = x[(names == "s0") & (y == 1)]  # a speaker heard in one emotion only
    mean_plain, _ = plain.speaker_params(plain.moments(angry_only))
    mean_fixed, _ = corrected.speaker_params(corrected.moments(angry_only))
    truth = offsets[0] + x.mean(axis=0) - offsets.mean(axis=0)  # roughly the speaker's mean
    assert abs(mean_fixed[0] - truth[0]) < 0.5 < abs(mean_plain[0] - truth[0])
    # a balanced speaker keeps (nearly) its own mean
    both = x[names == "s1"]
    np.testing.assert_allclose(
        corrected.speaker_params(corrected.moments(both))[0],
        plain.speaker_params(plain.moments(both))[0], atol=0.2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="keeps 4"):
        corrected.speaker_params(Moments.of(angry_only))  # raw rows are not its statistics


def test_pooled_scale_is_within_speaker():
    x, names = _speakers()
    _, within = pooled(speaker_moments(x, names).values())
    norm = SpeakerNorm.fit(x, names, k=1.0)
    np.testing.assert_allclose(norm.scale**2, within, rtol=1e-6)
    assert (norm.scale**2 < x.var(axis=0)).all()  # between-speaker spread left out


@pytest.mark.parametrize("with_composition", [False, True])
def test_state_round_trips_through_json_and_arrays(with_composition):
    x, names = _speakers(text_dim=2)
    composition = None
    if with_composition:
        rng = np.random.default_rng(3)
        composition = Composition(
            rng.normal(size=(3, 8)), rng.normal(size=3), np.zeros(8), np.ones(8),
            rng.normal(size=(3, 6)),
        )  # fmt: skip
    norm = SpeakerNorm.fit(x, names, k=10.0, stop=6, composition=composition)
    norm.info = {"decision": "on", "k": 10.0}
    restored = SpeakerNorm.from_dict(json.loads(json.dumps(norm.to_dict())))
    again = SpeakerNorm.from_arrays(json.loads(json.dumps(norm.meta())), norm.arrays())
    for other in (restored, again):
        assert other.info == norm.info and other.stop == 6
        np.testing.assert_array_equal(
            other.transform_groups(x, names), norm.transform_groups(x, names)
        )
    with pytest.raises(ValueError, match="disagree"):
        SpeakerNorm(np.zeros(3), np.ones(3), 1.0, start=0, stop=4)
    with pytest.raises(ValueError, match="k must be"):
        SpeakerNorm(np.zeros(3), np.ones(3), -1.0)
