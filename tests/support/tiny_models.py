"""Tiny, randomly initialised Hugging Face models saved to a directory, for tests.

Each builder writes a directory that ``AutoModel.from_pretrained(dir)`` (and so
``build_encoder(str(dir), modality)``) loads with no network: real model classes and
real tokenizers / feature extractors, tiny weights. Builders are deterministic for a
given ``seed`` and return the directory.

    make_tiny_wav2vec2(dir)                      wav2vec2-base-like: group norm, no attention mask
    make_tiny_wav2vec2(dir, attention_mask=True) large-robust-like: layer norm, attention mask
    make_tiny_speech_model(dir, kind="hubert")   same idea for HuBERT / WavLM
    make_tiny_text_model(dir, kind="electra")    ELECTRA or BERT + a WordPiece tokenizer
    make_tiny_kobert_like(dir)                   BERT + a SentencePiece model laid out like KoBERT
"""

from __future__ import annotations

import io
import json
from pathlib import Path

#: A few Korean sentences in the corpus's style (one per emotion), for training tokenizers.
KOREAN_SENTENCES: tuple[str, ...] = (
    "오늘 정말 기분이 좋아요.",
    "내일 시험이 걱정돼서 잠이 안 와.",
    "왜 이렇게 화가 나는지 모르겠어.",
    "너무 슬퍼서 눈물이 났어요.",
    "갑자기 그런 말을 들으니 당황스럽네요.",
    "그냥 평범한 하루였어요.",
    "그 말은 정말 상처가 됐어.",
    "친구가 선물을 줘서 정말 행복해요.",
    "비가 와서 기분이 좀 우울하네요.",
    "지하철이 또 늦어서 짜증이 나요.",
)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _speech_config(kind: str, attention_mask: bool, hidden_size: int, num_layers: int):
    import transformers

    common = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        conv_bias=attention_mask,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if attention_mask else "group",
        do_stable_layer_norm=attention_mask,
        vocab_size=8,
        # Dropout off so repeated runs agree exactly even outside eval() mistakes.
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    if kind == "wav2vec2":
        return transformers.Wav2Vec2Config(**common)
    if kind == "hubert":
        return transformers.HubertConfig(**common)
    if kind == "wavlm":
        return transformers.WavLMConfig(**common, num_buckets=16, max_bucket_distance=40)
    raise ValueError(f"unknown tiny speech model kind {kind!r} (wav2vec2, hubert, wavlm)")


def make_tiny_speech_model(
    directory: str | Path,
    *,
    kind: str = "wav2vec2",
    attention_mask: bool = False,
    hidden_size: int = 32,
    num_layers: int = 2,
    sample_rate_hz: int = 16_000,
    seed: int = 0,
) -> Path:
    """A tiny wav2vec2 / HuBERT / WavLM model plus its feature extractor in ``directory``.

    ``attention_mask=False`` mirrors wav2vec2-base (group norm in the feature encoder, a
    feature extractor with ``return_attention_mask=False``); ``True`` mirrors
    wav2vec2-large-robust (layer norm, stable layer norm, attention mask).
    """
    import torch
    import transformers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _speech_config(kind, attention_mask, hidden_size, num_layers)
    model_class = {
        "wav2vec2": transformers.Wav2Vec2Model,
        "hubert": transformers.HubertModel,
        "wavlm": transformers.WavLMModel,
    }[kind]
    model_class(config).eval().save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sample_rate_hz,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=attention_mask,
    ).save_pretrained(directory)
    return directory


def make_tiny_wav2vec2(
    directory: str | Path, *, attention_mask: bool = False, seed: int = 0
) -> Path:
    """A tiny wav2vec 2.0 checkpoint (see :func:`make_tiny_speech_model`)."""
    return make_tiny_speech_model(directory, attention_mask=attention_mask, seed=seed)


def train_wordpiece(sentences: tuple[str, ...] = KOREAN_SENTENCES, vocab_size: int = 200):
    """A WordPiece ``tokenizers.Tokenizer`` with BERT pre/post-processing, trained in memory."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(list(sentences), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def _text_config(
    config_class: type,
    *,
    vocab_size: int,
    pad_token_id: int,
    hidden_size: int,
    num_layers: int,
    **extra: object,
):
    """A tiny BERT-family config: 2 heads, 64 positions, dropout off (as for speech)."""
    return config_class(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=pad_token_id,
        **extra,
    )


def make_tiny_text_model(
    directory: str | Path,
    *,
    kind: str = "electra",
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """A tiny ELECTRA (discriminator body) or BERT model with a Korean WordPiece tokenizer."""
    import torch
    import transformers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backend = train_wordpiece()
    if kind == "electra":
        tok_class, config_class, model_class = (
            transformers.ElectraTokenizerFast,
            transformers.ElectraConfig,
            transformers.ElectraModel,
        )
        extra = {"embedding_size": hidden_size}
    elif kind == "bert":
        tok_class, config_class, model_class = (
            transformers.BertTokenizerFast,
            transformers.BertConfig,
            transformers.BertModel,
        )
        extra = {}
    else:
        raise ValueError(f"unknown tiny text model kind {kind!r} (electra, bert)")
    tokenizer = tok_class(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=64,
        # BERT's defaults lower-case and strip accents on reload, and stripping accents
        # decomposes Hangul syllables into jamo: every Korean word would become [UNK].
        do_lower_case=False,
        strip_accents=False,
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = _text_config(
        config_class,
        vocab_size=backend.get_vocab_size(),
        pad_token_id=backend.token_to_id("[PAD]"),
        hidden_size=hidden_size,
        num_layers=num_layers,
        **extra,
    )
    model_class(config).eval().save_pretrained(directory)
    return directory


def train_sentencepiece(
    sentences: tuple[str, ...] = KOREAN_SENTENCES, vocab_size: int = 200
) -> bytes:
    """A unigram SentencePiece model (serialised) with KoBERT's special-token layout.

    KoBERT's ``spiece.model`` puts ``[UNK] [PAD] [CLS] [SEP] [MASK]`` at ids 0-4, so the
    model's ids are the sentencepiece ids; this tiny one does the same.
    """
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences) * 10),
        model_writer=buffer,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        model_type="unigram",
        unk_id=0,
        unk_piece="[UNK]",
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        user_defined_symbols=["[PAD]", "[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    return buffer.getvalue()


def make_tiny_kobert_like(
    directory: str | Path,
    *,
    vocab_txt: bool = False,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """A tiny BERT laid out like ``skt/kobert-base-v1``: ``spiece.model`` + a
    ``tokenizer_config.json`` naming ``XLNetTokenizer`` (which is what the hub repo ships
    and why AutoTokenizer gets KoBERT wrong).

    ``vocab_txt=True`` lays it out like ``monologg/kobert`` instead: the sentencepiece
    model as ``tokenizer_78b3253a26.model`` and the model's ids in ``vocab.txt`` (a
    different order from the sentencepiece ids, so a loader that ignores vocab.txt gives
    wrong ids).
    """
    import sentencepiece as spm
    import torch
    import transformers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    proto = train_sentencepiece()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if vocab_txt:
        (directory / "tokenizer_78b3253a26.model").write_bytes(proto)
        # monologg's vocab.txt: specials first, then the pieces in another order.
        specials = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
        rest = sorted(p for p in pieces if p not in specials)
        (directory / "vocab.txt").write_text("\n".join(specials + rest) + "\n", encoding="utf-8")
        tokenizer_config = {"do_lower_case": False, "tokenizer_class": "KoBertTokenizer"}
    else:
        (directory / "spiece.model").write_bytes(proto)
        tokenizer_config = {
            "do_lower_case": False,
            "remove_space": True,
            "keep_accents": False,
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
            "tokenizer_class": "XLNetTokenizer",
        }
    (directory / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config, indent=2), encoding="utf-8"
    )
    torch.manual_seed(seed)
    config = _text_config(
        transformers.BertConfig,
        vocab_size=len(pieces),
        pad_token_id=1,
        hidden_size=hidden_size,
        num_layers=num_layers,
    )
    transformers.BertModel(config).eval().save_pretrained(directory)
    return directory
