import pytest

from emofuse.labels import KOREAN_EMOTIONS, LabelSet, UnknownLabelError, label_order


def test_korean_aliases_map_to_canonical_english():
    assert KOREAN_EMOTIONS.canonical("기쁨") == "happy"
    assert KOREAN_EMOTIONS.canonical(" 상처 ") == "hurt"
    assert KOREAN_EMOTIONS.canonical("Angry") == "angry"
    assert len(KOREAN_EMOTIONS) == 7


def test_unknown_label_names_the_choices():
    with pytest.raises(UnknownLabelError, match="boredom.*expected one of happy"):
        KOREAN_EMOTIONS.canonical("boredom")


def test_label_order_keeps_the_paper_order_for_the_korean_set_and_sorts_others():
    assert label_order(["sad", "happy", "sad"]) == ["happy", "sad"]
    assert label_order(["disgust", "angry", "boredom"]) == ["angry", "boredom", "disgust"]


def test_label_set_rejects_bad_definitions():
    with pytest.raises(ValueError, match="duplicate"):
        LabelSet(names=("a", "a"))
    with pytest.raises(ValueError, match="unknown label"):
        LabelSet(names=("a",), aliases={"b": "c"})


def test_decomposed_hangul_labels_match():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "슬픔")
    assert decomposed != "슬픔"
    assert KOREAN_EMOTIONS.canonical(decomposed) == "sad"
    assert decomposed in KOREAN_EMOTIONS
