"""Hugging Face speech and text encoders on tiny random models, through build_encoder."""

from __future__ import annotations

import csv
import itertools
import shutil

import numpy as np
import pytest
from support.requirements import need_module
from support.tiny_models import (
    KOREAN_SENTENCES,
    make_tiny_kobert_like,
    make_tiny_speech_model,
    make_tiny_text_model,
    make_tiny_wav2vec2,
)

from emofuse.encoders import EncoderError, build_encoder

# conftest.py sets HF_HUB_OFFLINE=1: nothing here may reach the hub.

torch = need_module("torch")
transformers = need_module("transformers")

SR = 16_000


def _wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def w2v_nomask(tmp_path_factory):
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("w2v-group"), attention_mask=False)


@pytest.fixture(scope="module")
def w2v_mask(tmp_path_factory):
    return make_tiny_wav2vec2(tmp_path_factory.mktemp("w2v-layer"), attention_mask=True)


@pytest.fixture(scope="module")
def electra_dir(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("electra"), kind="electra")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("bert"), kind="bert")


@pytest.fixture(scope="module")
def kobert_dir(tmp_path_factory):
    return make_tiny_kobert_like(tmp_path_factory.mktemp("kobert"))


# ---- speech -------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True])
def test_speech_shapes_and_metadata(request, masked):
    directory = request.getfixturevalue("w2v_mask" if masked else "w2v_nomask")
    encoder = build_encoder(str(directory), "speech")
    assert encoder.modality == "speech"
    assert encoder.dim == 32
    assert encoder.sample_rate_hz == SR
    assert encoder.uses_attention_mask is masked
    out = encoder.encode([_wave(0.5, 0), _wave(0.3, 1), _wave(0.9, 2)])
    assert out.shape == (3, 32) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert not np.allclose(out[0], out[1])
    # A 2-D array of equal-length clips is a batch too (no padding: same as alone).
    stacked = encoder.encode(np.stack([_wave(0.5, 0), _wave(0.5, 3)]))
    np.testing.assert_allclose(stacked[0], encoder.encode([_wave(0.5, 0)])[0], atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_vector_independent_of_batch_partner(request, masked):
    """The same clip gives the same vector alone or batched with a longer one, whether
    or not the checkpoint takes an attention mask (unmasked ones never see padding)."""
    directory = request.getfixturevalue("w2v_mask" if masked else "w2v_nomask")
    encoder = build_encoder(str(directory), "speech")
    short, long = _wave(0.4, 0), _wave(1.2, 1)
    alone = encoder.encode([short])[0]
    batched = encoder.encode([short, long])
    np.testing.assert_allclose(batched[0], alone, atol=1e-5)
    np.testing.assert_allclose(batched[1], encoder.encode([long])[0], atol=1e-5)
    np.testing.assert_allclose(encoder.encode([long, short])[1], alone, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_unmasked_model_never_sees_padding(w2v_nomask, pooling):
    """A group-norm checkpoint (no attention mask) runs on equal-length groups: each
    clip's vector is the model's output on that clip alone, in the caller's order. The
    reference runs on the CPU, so the encoder does too (across devices: test_input_pipeline)."""
    encoder = build_encoder(f"{w2v_nomask}?pooling={pooling}&device=cpu", "speech")
    clips = [_wave(0.4, 0), _wave(1.2, 1), _wave(0.4, 2), _wave(0.7, 3), _wave(1.2, 4)]
    ours = encoder.encode(clips)

    extractor = transformers.AutoFeatureExtractor.from_pretrained(w2v_nomask)
    model = transformers.AutoModel.from_pretrained(w2v_nomask).eval()
    for row, clip in zip(ours, clips, strict=True):
        inputs = extractor(clip, sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            hidden = model(inputs["input_values"]).last_hidden_state[0]
        expected = hidden.mean(0) if pooling == "mean" else hidden.max(0).values
        np.testing.assert_allclose(row, expected.numpy(), atol=1e-5)


def test_equal_length_groups():
    from emofuse.encoders.hf_speech import equal_length_groups

    assert equal_length_groups([5, 3, 5, 7, 3]) == [[0, 2], [1, 4], [3]]
    assert equal_length_groups([]) == []


@pytest.mark.parametrize("masked", [False, True])
def test_layer_choices(request, masked):
    directory = request.getfixturevalue("w2v_mask" if masked else "w2v_nomask")
    clips = [_wave(0.5, 0), _wave(0.8, 1)]
    vectors = {
        layer: build_encoder(f"{directory}?layer={layer}", "speech").encode(clips)
        for layer in ("last", "0", "1", "2", "mean", "-1")
    }
    assert not np.allclose(vectors["last"], vectors["0"])
    assert not np.allclose(vectors["last"], vectors["1"])
    assert not np.allclose(vectors["mean"], vectors["last"])
    assert not np.allclose(vectors["1"], vectors["2"])
    np.testing.assert_allclose(vectors["-1"], vectors["2"], atol=1e-6)
    if not masked:
        # Post-norm (wav2vec2-base-like): the last layer's output is the model's output.
        np.testing.assert_allclose(vectors["2"], vectors["last"], atol=1e-5)
    # "mean" averages the transformer layers 1..N, not the embeddings output.
    np.testing.assert_allclose(vectors["mean"], (vectors["1"] + vectors["2"]) / 2, atol=1e-5)


def test_layer_out_of_range(w2v_mask):
    encoder = build_encoder(f"{w2v_mask}?layer=7", "speech")
    with pytest.raises(EncoderError, match="layer 7 out of range.*2 layers"):
        encoder.encode([_wave(1.0, 0)])


def test_long_clips_chunk_or_crop(w2v_mask):
    clip = _wave(1.2, 3)
    chunked = build_encoder(f"{w2v_mask}?max_duration_s=0.5", "speech")
    windows = np.array_split(clip, 3)
    parts = chunked.encode(windows)
    frames = chunked._frame_lengths([w.size for w in windows]).numpy().astype(float)
    expected = (parts * frames[:, None]).sum(0) / frames.sum()
    np.testing.assert_allclose(chunked.encode([clip])[0], expected, atol=1e-5)

    cropped = build_encoder(f"{w2v_mask}?max_duration_s=0.5&long=crop", "speech")
    np.testing.assert_allclose(
        cropped.encode([clip])[0], cropped.encode([clip[: SR // 2]])[0], atol=1e-5
    )
    assert not np.allclose(cropped.encode([clip])[0], chunked.encode([clip])[0], atol=1e-4)
    # A clip shorter than one frame's receptive field is padded, not a crash.
    assert build_encoder(str(w2v_mask), "speech").encode([clip[:50]]).shape == (1, 32)


def test_speech_fingerprint(tmp_path, w2v_mask):
    base = build_encoder(str(w2v_mask), "speech").fingerprint()
    for options in ("layer=1", "layer=mean", "pooling=max", "dtype=bfloat16", "long=crop"):
        assert build_encoder(f"{w2v_mask}?{options}", "speech").fingerprint() != base, options
    # The same checkpoint copied elsewhere keeps its fingerprint ...
    copy = tmp_path / w2v_mask.name
    shutil.copytree(w2v_mask, copy)
    assert build_encoder(str(copy), "speech").fingerprint() == base
    # ... and other weights saved at the same place get a new one.
    make_tiny_wav2vec2(copy, attention_mask=True, seed=1)
    assert build_encoder(str(copy), "speech").fingerprint() != base


def test_speech_spec_round_trip(w2v_nomask):
    encoder = build_encoder(f"hf:{w2v_nomask}?layer=mean&pooling=max", "speech")
    again = build_encoder(encoder.spec, "speech")
    assert again.fingerprint() == encoder.fingerprint()


@pytest.mark.parametrize("kind,masked", [("hubert", False), ("wavlm", True)])
def test_other_speech_architectures(tmp_path, kind, masked):
    directory = make_tiny_speech_model(tmp_path / kind, kind=kind, attention_mask=masked)
    encoder = build_encoder(f"{directory}?layer=mean", "speech")
    out = encoder.encode([_wave(0.4, 0), _wave(0.7, 1)])
    assert out.shape == (2, 32) and np.all(np.isfinite(out))


def test_speech_concatenation(w2v_mask, w2v_nomask):
    encoder = build_encoder(f"{w2v_mask}+{w2v_nomask}?layer=0", "speech")
    assert encoder.dim == 64
    assert encoder.encode([_wave(1.0, 0)]).shape == (1, 64)


def test_speech_bad_input(w2v_mask):
    encoder = build_encoder(str(w2v_mask), "speech")
    with pytest.raises(EncoderError, match="item 1: empty waveform"):
        encoder.encode([_wave(1.0, 0), np.zeros(0, np.float32)])
    with pytest.raises(EncoderError, match="item 0: expected a mono waveform"):
        encoder.encode([np.zeros((2, SR), np.float32)])
    with pytest.raises(EncoderError, match="NaN"):
        encoder.encode([np.full(SR, np.nan, np.float32)])
    with pytest.raises(EncoderError, match="unknown speech encoder option.*'layers'"):
        build_encoder(f"{w2v_mask}?layers=2", "speech")
    with pytest.raises(EncoderError, match="float16 needs a GPU"):
        build_encoder(f"{w2v_mask}?dtype=fp16&device=cpu", "speech").encode([_wave(1.0, 0)])


def test_bfloat16_close_to_float32(w2v_mask):
    clips = [_wave(0.5, 0), _wave(0.7, 1)]
    full = build_encoder(f"{w2v_mask}?device=cpu", "speech").encode(clips)
    half = build_encoder(f"{w2v_mask}?device=cpu&dtype=bf16", "speech").encode(clips)
    assert half.dtype == np.float32
    assert np.abs(full - half).max() < 0.1 * np.abs(full).max()


# ---- hub names and errors ---------------------------------------------------------------


def test_missing_hub_model_gives_offline_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    name = "emofuse-tests/no-such-wav2vec2"
    with pytest.raises(EncoderError) as caught:
        build_encoder(name, "speech").encode([_wave(1.0, 0)])
    message = str(caught.value)
    assert message.startswith(f"could not load '{name}': no network access to the Hugging Face hub")
    assert "pass a local directory" in message
    with pytest.raises(EncoderError, match="could not load 'emofuse-tests/no-such-electra'"):
        build_encoder("emofuse-tests/no-such-electra", "text").fingerprint()


def test_missing_directory_is_not_a_hub_lookup(tmp_path):
    with pytest.raises(EncoderError, match="no such model directory"):
        build_encoder(str(tmp_path / "nothere" / "model"), "speech")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(EncoderError, match="is a file, not a model directory"):
        build_encoder(str(tmp_path / "file.bin"), "text")


def test_aliases_resolve_without_loading():
    from emofuse.encoders.hf_text import TEXT_ALIASES

    assert build_encoder("kcelectra", "text").source.ref == "beomi/KcELECTRA-base-v2022"
    assert build_encoder("kobert", "text").source.ref == "skt/kobert-base-v1"
    assert build_encoder("klue-roberta-large", "text").source.ref == "klue/roberta-large"
    assert TEXT_ALIASES["koelectra"] == "monologg/koelectra-base-v3-discriminator"
    speech = build_encoder("wav2vec2-large-robust?layer=12", "speech")
    assert speech.source.ref == "facebook/wav2vec2-large-robust"
    assert speech.spec == "wav2vec2-large-robust?layer=12"


# ---- text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["electra_dir", "bert_dir"])
def test_text_shapes_pooling_and_batching(request, fixture):
    directory = request.getfixturevalue(fixture)
    texts = list(KOREAN_SENTENCES[:4]) + [""]
    cls = build_encoder(str(directory), "text")
    mean = build_encoder(f"{directory}?pooling=mean", "text")
    assert cls.dim == 32 and cls.tokenizer_kind == "auto"
    a, b = cls.encode(texts), mean.encode(texts)
    assert a.shape == b.shape == (5, 32) and a.dtype == np.float32
    assert not np.allclose(a, b)
    # A short text padded next to a long one keeps its vector (attention mask).
    np.testing.assert_allclose(cls.encode(texts[4:])[0], a[4], atol=1e-5)
    np.testing.assert_allclose(mean.encode(texts[1:2])[0], b[1], atol=1e-5)


def test_text_mean_pooling_matches_manual(electra_dir):
    texts = [KOREAN_SENTENCES[0], KOREAN_SENTENCES[4]]
    ours = build_encoder(f"{electra_dir}?pooling=mean&device=cpu", "text").encode(texts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(electra_dir)
    model = transformers.AutoModel.from_pretrained(electra_dir).eval()
    for row, text in zip(ours, texts, strict=True):
        ids = tokenizer(text, return_tensors="pt")
        assert ids["input_ids"].shape[1] > 3  # real Korean tokens, not all [UNK]
        assert tokenizer.unk_token_id not in ids["input_ids"][0].tolist()
        with torch.no_grad():
            hidden = model(**ids).last_hidden_state[0]
        np.testing.assert_allclose(row, hidden.mean(0).numpy(), atol=1e-5)


def test_text_layers_and_max_length(electra_dir):
    texts = [" ".join(KOREAN_SENTENCES), "좋아요"]
    last = build_encoder(str(electra_dir), "text").encode(texts)
    first = build_encoder(f"{electra_dir}?layer=1", "text").encode(texts)
    averaged = build_encoder(f"{electra_dir}?layer=mean&pooling=mean", "text").encode(texts)
    assert not np.allclose(last, first)
    assert not np.allclose(averaged, last)
    short = build_encoder(f"{electra_dir}?max_length=8&pooling=mean", "text").encode(texts)
    full = build_encoder(f"{electra_dir}?pooling=mean", "text").encode(texts)
    assert not np.allclose(short[0], full[0], atol=1e-4)  # the long text was cut
    np.testing.assert_allclose(short[1], full[1], atol=1e-5)  # the short one was not


def test_text_fingerprint(tmp_path, bert_dir):
    base = build_encoder(str(bert_dir), "text").fingerprint()
    for options in ("pooling=mean", "layer=1", "max_length=64", "dtype=bf16"):
        assert build_encoder(f"{bert_dir}?{options}", "text").fingerprint() != base, options
    copy = tmp_path / bert_dir.name
    shutil.copytree(bert_dir, copy)
    assert build_encoder(str(copy), "text").fingerprint() == base
    make_tiny_text_model(copy, kind="bert", seed=5)
    assert build_encoder(str(copy), "text").fingerprint() != base


def test_text_bad_input(electra_dir):
    encoder = build_encoder(str(electra_dir), "text")
    with pytest.raises(EncoderError, match="item 1: expected a string"):
        encoder.encode(["좋아요", 3])
    with pytest.raises(EncoderError, match="not one string"):
        encoder.encode("좋아요")
    with pytest.raises(EncoderError, match="unknown text pooling"):
        build_encoder(f"{electra_dir}?pooling=max", "text")


# ---- KoBERT -------------------------------------------------------------------------------


def test_kobert_style_directory_loads(kobert_dir):
    encoder = build_encoder(f"{kobert_dir}?device=cpu", "text")  # compared with the CPU below
    assert encoder.tokenizer_kind == "kobert-sentencepiece"
    tokenizer = encoder._get_tokenizer()
    ids = tokenizer.encode("오늘 정말 기분이 좋아요.")
    # KoBERT's layout: [CLS]=2 first, [SEP]=3 last (XLNet would put <cls> last).
    assert ids[0] == 2 and ids[-1] == 3
    assert 0 not in ids  # every syllable is known to the sentencepiece model
    batch = tokenizer(["좋아요", "오늘 정말 기분이 좋아요."])
    assert batch["input_ids"][0, -1].item() == 1  # right-padded with [PAD]=1
    assert batch["attention_mask"].sum(1).tolist() == [len(tokenizer.encode("좋아요")), len(ids)]

    texts = ["오늘 정말 기분이 좋아요.", "너무 슬퍼서 눈물이 났어요."]
    vectors = encoder.encode(texts)
    model = transformers.BertModel.from_pretrained(kobert_dir).eval()
    with torch.no_grad():
        expected = model(torch.tensor([ids])).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)
    mean = build_encoder(f"{kobert_dir}?pooling=mean&device=cpu", "text").encode(texts)
    assert not np.allclose(mean, vectors)


def test_kobert_text_cleanup(kobert_dir):
    tokenizer = build_encoder(str(kobert_dir), "text")._get_tokenizer()
    # Runs of spaces collapse; the NFKD step does not break Hangul (sentencepiece's NFKC
    # recomposes it).
    assert tokenizer.tokenize("  오늘   정말 ") == tokenizer.tokenize("오늘 정말")
    assert "[UNK]" not in tokenizer.tokenize("기분이 좋아요")
    # XLNet's number-comma rule: "12," is split into the number and the comma.
    assert tokenizer.tokenize("12,")[-1] == ","


def test_kobert_vocab_txt_layout(tmp_path):
    """monologg/kobert: ids come from vocab.txt, not from the sentencepiece model."""
    directory = make_tiny_kobert_like(tmp_path / "monologg", vocab_txt=True)
    encoder = build_encoder(str(directory), "text")
    tokenizer = encoder._get_tokenizer()
    assert tokenizer.vocab_path is not None and tokenizer.vocab_path.name == "vocab.txt"
    vocab = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
    pieces = tokenizer.tokenize("기분이 좋아요")
    ids = tokenizer.convert_tokens_to_ids(pieces)
    assert [vocab[i] for i in ids] == pieces
    assert ids != [tokenizer.sp.piece_to_id(p) for p in pieces]  # the two orders differ
    assert encoder.encode(["기분이 좋아요"]).shape == (1, 32)


def test_forced_tokenizer_choice(kobert_dir, electra_dir):
    with pytest.raises(EncoderError, match="tokenizer=kobert but no sentencepiece model"):
        build_encoder(f"{electra_dir}?tokenizer=kobert", "text").encode(["좋아요"])
    # Forcing the tokenizer that "auto" picks anyway computes the same vectors: same
    # fingerprint, so the feature store reuses them.
    auto = build_encoder(str(kobert_dir), "text")
    forced = build_encoder(f"{kobert_dir}?tokenizer=kobert", "text")
    assert auto.fingerprint() == forced.fingerprint()


def test_real_korean_comments(kote_dir, electra_dir, kobert_dir):
    """KOTE comments (slang, emoticons, ㅋㅋㅋ, long rants) through both tokenizer paths."""
    with (kote_dir / "test.tsv").open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        texts = [row[1] for row in itertools.islice(rows, 48)]
    for directory in (electra_dir, kobert_dir):
        vectors = build_encoder(f"{directory}?pooling=mean", "text").encode(texts)
        assert vectors.shape == (len(texts), 32)
        assert np.all(np.isfinite(vectors))
