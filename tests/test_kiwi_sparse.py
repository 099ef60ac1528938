"""kiwi-sparse: a class-balanced logistic regression on sparse Kiwi morpheme + character
TF-IDF, whose class scores are the text vector (cross-fitted on its training texts)."""

import json
import random

import numpy as np
import pytest

from emofuse.encoders import build_encoder
from emofuse.encoders.base import ConcatEncoder, EncoderError
from emofuse.encoders.crossfit_logistic import C_GRID
from emofuse.encoders.kiwi_sparse import KiwiSparseEncoder, KiwiSparseSettings

WORDS = {
    "happy": ["좋아요", "행복해요", "신나요", "기뻐요", "최고예요"],
    "sad": ["슬퍼요", "우울해요", "눈물이 나요", "속상해요", "외로워요"],
    "angry": ["화나요", "짜증나요", "열받아요", "싫어요", "분해요"],
}
SUBJECTS = ["오늘은", "정말", "너무", "그냥", "친구 때문에", "시험 때문에", "날씨가", "요즘"]


def corpus(n_per_label: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Short Korean sentences whose emotion word decides the label."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in WORDS.items():
        for _ in range(n_per_label):
            texts.append(f"{rng.choice(SUBJECTS)} {rng.choice(SUBJECTS)} {rng.choice(words)}")
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[KiwiSparseEncoder, list[str], list[str]]:
    texts, labels = corpus(30)
    encoder = build_encoder("kiwi-sparse", "text")
    encoder.fit(texts, labels)
    return encoder, texts, labels


def test_vectors_are_class_scores_that_predict_unseen_sentences(fitted):
    encoder, _, _ = fitted
    assert encoder.dim == 3 and encoder.classes == ["angry", "happy", "sad"]
    assert encoder.chosen_c in C_GRID
    unseen, truth = corpus(10, seed=1)
    vectors = encoder.encode(unseen)
    assert vectors.shape == (30, 3) and vectors.dtype == np.float32
    predicted = np.array(encoder.classes)[vectors.argmax(axis=1)]
    assert np.mean(predicted == np.array(truth)) > 0.9
    assert not encoder.encode(["", "   "]).any()  # empty text: the zero vector


def test_training_texts_get_out_of_fold_scores(fitted):
    encoder, texts, labels = fitted
    seen = encoder.encode(texts)
    no_cv = KiwiSparseEncoder(KiwiSparseSettings(C=encoder.chosen_c, folds=0))
    no_cv.fit(texts, labels)
    in_sample = no_cv.encode(texts)
    # Same model family and C: on texts it never held out, the full model is more sure
    # of the right label than the model that did not see the text.
    index = [encoder.classes.index(lab) for lab in labels]
    margin_oof = seen[np.arange(len(texts)), index] - seen.mean(axis=1)
    margin_full = in_sample[np.arange(len(texts)), index] - in_sample.mean(axis=1)
    assert margin_full.mean() > margin_oof.mean()
    assert not np.allclose(seen, in_sample)
    # A text outside the training set gets the full model's scores, the same in both.
    other = ["완전히 새로운 문장이에요 좋아요"]
    assert np.allclose(encoder.encode(other), no_cv.encode(other), atol=1e-4)


def test_fit_ignores_order_and_fingerprints_the_labels(fitted):
    encoder, texts, labels = fitted
    pairs = list(zip(texts, labels, strict=True))
    random.Random(3).shuffle(pairs)
    shuffled = build_encoder("kiwi-sparse", "text")
    shuffled.fit([t for t, _ in pairs], [lab for _, lab in pairs])
    assert shuffled.fingerprint() == encoder.fingerprint()
    relabelled = build_encoder("kiwi-sparse", "text")
    relabelled.fit(texts, ["happy" if lab == "sad" else lab for lab in labels])
    assert relabelled.fingerprint() != encoder.fingerprint() and relabelled.dim == 2


def test_state_round_trip_and_refusals(fitted, tmp_path):
    encoder, texts, _ = fitted
    encoder.save_state(tmp_path / "state")
    again = build_encoder("kiwi-sparse", "text")
    again.load_state(tmp_path / "state")
    assert again.fingerprint() == encoder.fingerprint()
    probe = texts[:5] + ["처음 보는 문장", ""]
    assert np.array_equal(again.encode(probe), encoder.encode(probe))

    with pytest.raises(EncoderError, match="fitted with settings"):
        build_encoder("kiwi-sparse?folds=4", "text").load_state(tmp_path / "state")
    manifest = tmp_path / "state" / "kiwi_sparse.json"
    data = json.loads(manifest.read_text("utf-8"))
    data["C"] = 123.0
    manifest.write_text(json.dumps(data), "utf-8")
    with pytest.raises(EncoderError, match="does not match its fingerprint"):
        build_encoder("kiwi-sparse", "text").load_state(tmp_path / "state")


def test_fit_needs_labels_and_two_classes():
    encoder = build_encoder("kiwi-sparse", "text")
    assert encoder.needs_fit and encoder.needs_labels
    with pytest.raises(EncoderError, match="needs the training labels"):
        encoder.fit(["좋아요", "싫어요"])
    with pytest.raises(EncoderError, match="at least 2 labels"):
        encoder.fit(["좋아요", "행복해요"], ["happy", "happy"])
    with pytest.raises(EncoderError, match="not fitted"):
        encoder.encode(["좋아요"])
    with pytest.raises(EncoderError, match="known only after fitting"):
        _ = encoder.dim


def test_options_round_trip_through_the_spec():
    encoder = build_encoder("kiwi-sparse?C=2&folds=0&char_ngrams=2-4&balanced=no", "text")
    s = encoder.settings
    assert (s.C, s.folds, s.char_ngrams, s.balanced) == (2.0, 0, (2, 4), False)
    assert build_encoder(encoder.spec, "text").settings == s
    assert build_encoder("kiwi-sparse?C=auto&morph_ngrams=0", "text").spec == (
        "kiwi-sparse?morph_ngrams=0"
    )
    for bad, message in [
        ("kiwi-sparse?dim=3", "unknown.*'dim'"),
        ("kiwi-sparse?C=-1", "C must be a positive"),
        ("kiwi-sparse?folds=1", "folds must be 0"),
        ("kiwi-sparse?char_ngrams=3-1", "char_ngrams must look like"),
        ("kiwi-sparse?morph_ngrams=0&char_ngrams=0", "cannot both be 0"),
    ]:
        with pytest.raises(EncoderError, match=message):
            build_encoder(bad, "text")


def test_a_concatenation_passes_labels_to_the_part_that_needs_them():
    texts, labels = corpus(10)
    encoder = build_encoder("kiwi-sparse?folds=0&C=1+kiwi-tfidf?dim=4", "text")
    assert isinstance(encoder, ConcatEncoder) and encoder.needs_labels
    encoder.fit(texts, labels)
    assert encoder.encode(texts[:2]).shape == (2, 3 + 4)


def test_a_label_with_one_text_turns_cross_fitting_off():
    texts, labels = corpus(8)
    texts.append("무서워요 정말")
    labels.append("fear")
    encoder = build_encoder("kiwi-sparse?C=1", "text")
    encoder.fit(texts, labels)
    assert encoder.dim == 4 and "oof_keys" not in encoder._state


def test_a_large_corpus_picks_c_on_a_share_then_cross_fits_every_row(monkeypatch):
    import emofuse.encoders.crossfit_logistic as crossfit_logistic

    monkeypatch.setattr(crossfit_logistic, "CV_MAX_ROWS", 45)
    texts, labels = corpus(30)  # 90 rows: C is compared on about half of them
    encoder = build_encoder("kiwi-sparse", "text")
    encoder.fit(texts, labels)
    assert set(encoder._state["cv_uar"]) == {f"{c:g}" for c in C_GRID}
    assert encoder.chosen_c in C_GRID
    assert len(encoder._state["oof_keys"]) == len(set(texts))  # every training text
    unseen, truth = corpus(10, seed=1)
    predicted = np.array(encoder.classes)[encoder.encode(unseen).argmax(axis=1)]
    assert np.mean(predicted == np.array(truth)) > 0.9
