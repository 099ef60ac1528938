"""Sentence vectors from a BERT-like Korean text model (KcELECTRA, KoELECTRA, KLUE, KoBERT).

One vector per text: the chosen layer's token vectors pooled by ``cls`` (the first
token's vector; ELECTRA has no pooler, so the raw first-token state for every model) or
``mean`` (all tokens under the attention mask, [CLS] and [SEP] included, padding
excluded).

KoBERT. ``skt/kobert-base-v1`` ships a SentencePiece ``spiece.model`` and a
tokenizer_config naming ``XLNetTokenizer``, so AutoTokenizer builds XLNet's layout
(``X <sep> <cls>``, left padding, segment id 2 for <cls>) or, in transformers 5 without
protobuf, fails outright. SKT's own ``kobert_tokenizer.KoBERTTokenizer`` subclasses the
old slow XLNetTokenizer to get BERT's ``[CLS] X [SEP]`` with XLNet's text clean-up;
``monologg/kobert`` pairs the sentencepiece model with a ``vocab.txt`` that holds the
model's ids. :class:`KoBertTokenizer` below does the same job without either package: it
is used for any BERT / DistilBERT directory that holds a sentencepiece model (or with
``tokenizer=kobert``).
"""

from __future__ import annotations

import inspect
import json
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emofuse.encoders.base import EncoderError
from emofuse.encoders.hf_checkpoint import ModelSource, find_file, load_pretrained
from emofuse.encoders.hf_encoder import HFEncoder, build_from_options
from emofuse.encoders.hf_inputs import TextInputPlan
from emofuse.encoders.hf_layers import masked_pool
from emofuse.encoders.options import parse_choice, parse_int
from emofuse.modalities import TEXT

DEFAULT_TEXT_MODEL = "beomi/KcELECTRA-base-v2022"

#: Short names for the Korean text encoders (an existing directory of the same name wins).
TEXT_ALIASES: dict[str, str] = {
    "kcelectra": "beomi/KcELECTRA-base-v2022",
    "koelectra": "monologg/koelectra-base-v3-discriminator",
    "klue-bert": "klue/bert-base",
    "klue-roberta-small": "klue/roberta-small",
    "klue-roberta-base": "klue/roberta-base",
    "klue-roberta-large": "klue/roberta-large",
    "kobert": "skt/kobert-base-v1",
}

#: Hub repositories whose tokenizer is KoBERT's sentencepiece one.
KOBERT_HUB_NAMES = frozenset({"skt/kobert-base-v1", "monologg/kobert", "monologg/distilkobert"})
#: Sentencepiece model file names, most specific first (SKT, monologg).
KOBERT_SP_FILES = ("spiece.model", "tokenizer_78b3253a26.model")

POOLINGS = ("cls", "mean")
TOKENIZERS = ("auto", "kobert", "hf")
SPIECE_UNDERLINE = "\u2581"


class KoBertTokenizer:
    """KoBERT's tokenizer: XLNet-style text clean-up, SentencePiece pieces, BERT layout.

    Ids are the sentencepiece ids (``skt/kobert-base-v1``: ``[UNK] [PAD] [CLS] [SEP]
    [MASK]`` are pieces 0-4) unless a vocabulary file gives them: ``vocab.txt`` (one token
    per line, ``monologg/kobert``) or a gluonnlp vocab JSON with ``idx_to_token`` (SKT's
    original release).
    """

    def __init__(
        self,
        sp_model: str | Path,
        vocab: str | Path | None = None,
        *,
        remove_space: bool = True,
        keep_accents: bool = False,
        do_lower_case: bool = False,
        specials: Mapping[str, str] | None = None,
    ):
        import sentencepiece as spm

        self.sp_model_path = Path(sp_model)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.sp_model_path))
        except (OSError, RuntimeError) as error:
            raise EncoderError(
                f"{self.sp_model_path}: not a sentencepiece model ({error})"
            ) from error
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        self.do_lower_case = do_lower_case
        names = {"unk": "[UNK]", "pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]"}
        names.update(specials or {})
        self.vocab_path = Path(vocab) if vocab is not None else None
        self.token_to_id: dict[str, int] | None = (
            _read_vocab(self.vocab_path) if self.vocab_path is not None else None
        )
        self.special_ids = {key: self._special_id(key, token) for key, token in names.items()}

    def _special_id(self, key: str, token: str) -> int:
        if self.token_to_id is not None:
            if token not in self.token_to_id:
                raise EncoderError(f"{self.vocab_path}: no {token} token in the vocabulary")
            return self.token_to_id[token]
        piece_id = self.sp.piece_to_id(token)
        if self.sp.id_to_piece(piece_id) != token:
            raise EncoderError(
                f"{self.sp_model_path}: the sentencepiece model has no {token} piece and there "
                "is no vocab.txt giving the model's ids"
            )
        return piece_id

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (DataLoader workers started by spawn): the sentencepiece model as bytes."""
        state = dict(self.__dict__)
        state["sp"] = self.sp.serialized_model_proto()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import sentencepiece as spm

        proto = state.pop("sp")
        self.__dict__.update(state)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(proto)

    @property
    def vocab_size(self) -> int:
        return len(self.token_to_id) if self.token_to_id is not None else self.sp.get_piece_size()

    def clean(self, text: str) -> str:
        """XLNetTokenizer.preprocess_text, which KoBERT's tokenizer inherits. NFKD splits
        Hangul into jamo; sentencepiece's NFKC normaliser puts them back together."""
        if self.remove_space:
            text = " ".join(text.strip().split())
        text = text.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            text = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in text if not unicodedata.combining(c))
        if self.do_lower_case:
            text = text.lower()
        return text

    def tokenize(self, text: str) -> list[str]:
        pieces = self.sp.encode(self.clean(text), out_type=str)
        out: list[str] = []
        for piece in pieces:
            # XLNet's rule: "123," -> pieces of "123" then "," (numbers with a comma).
            if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                parts = self.sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
                if piece[0] != SPIECE_UNDERLINE and parts and parts[0].startswith(SPIECE_UNDERLINE):
                    parts = parts[1:] if len(parts[0]) == 1 else [parts[0][1:], *parts[1:]]
                out.extend([*parts, piece[-1]])
            else:
                out.append(piece)
        return out

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        if self.token_to_id is None:
            return [self.sp.piece_to_id(t) for t in tokens]
        unk = self.special_ids["unk"]
        return [self.token_to_id.get(t, unk) for t in tokens]

    def encode(self, text: str, max_length: int = 512) -> list[int]:
        """``[CLS] pieces [SEP]``, pieces cut so the whole fits in ``max_length``."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))[: max(0, max_length - 2)]
        return [self.special_ids["cls"], *ids, self.special_ids["sep"]]

    def __call__(self, texts: Sequence[str], max_length: int = 512) -> dict[str, Any]:
        """A right-padded batch as torch tensors (input_ids, attention_mask, token_type_ids)."""
        import torch

        rows = [self.encode(t, max_length) for t in texts]
        width = max(len(r) for r in rows)
        pad = self.special_ids["pad"]
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _read_vocab(path: Path) -> dict[str, int]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EncoderError(f"{path}: cannot read the vocabulary ({error})") from error
    if path.suffix == ".json":
        try:
            tokens = json.loads(text)["idx_to_token"]
        except (ValueError, KeyError, TypeError):
            raise EncoderError(
                f"{path}: not a gluonnlp vocabulary (no 'idx_to_token' list)"
            ) from None
    else:
        tokens = [line.strip() for line in text.splitlines()]
        while tokens and not tokens[-1]:
            tokens.pop()
    return {token: index for index, token in enumerate(tokens)}


def _kobert_files(source: ModelSource, forced: bool) -> tuple[Path, Path | None] | None:
    """(sentencepiece model, vocabulary or None) when ``source`` is KoBERT-style."""
    if source.is_dir:
        directory = Path(source.ref)
        config_path = directory / "config.json"
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if not forced and model_type not in ("bert", "distilbert"):
            return None  # ALBERT, XLNet, T5 ... use sentencepiece with their own tokenizers
        candidates = [directory / n for n in KOBERT_SP_FILES]
        candidates += sorted(directory.glob("*.spiece")) + sorted(directory.glob("*.model"))
        sp_model = next((p for p in candidates if p.is_file()), None)
        if sp_model is None:
            if forced:
                raise EncoderError(f"{directory}: tokenizer=kobert but no sentencepiece model file")
            return None
        vocab = directory / "vocab.txt"
        if not vocab.is_file():
            gluon = [p for p in sorted(directory.glob("*.json")) if _is_gluon_vocab(p)]
            vocab = gluon[0] if gluon else None
        return sp_model, vocab
    if not forced and source.ref not in KOBERT_HUB_NAMES:
        return None
    find_file(source, "config.json")  # fails clearly when the hub cannot be reached
    sp_model = find_file(source, "spiece.model", required=False)
    if sp_model is not None:
        return sp_model, None
    sp_model = find_file(source, "tokenizer_78b3253a26.model", required=False)
    if sp_model is None:
        raise EncoderError(f"could not load {source.requested!r}: no sentencepiece model found")
    return sp_model, find_file(source, "vocab.txt", required=False)


def _is_gluon_vocab(path: Path) -> bool:
    if path.name in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
        return False
    try:
        return "idx_to_token" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _kobert_tokenizer(sp_model: Path, vocab: Path | None) -> KoBertTokenizer:
    settings: dict[str, Any] = {}
    config_path = sp_model.parent / "tokenizer_config.json"
    if config_path.is_file():
        try:
            settings = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError:
            raise EncoderError(f"{config_path}: not valid JSON") from None
    specials = {}
    for key in ("unk", "pad", "cls", "sep"):
        value = settings.get(f"{key}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            specials[key] = value
    return KoBertTokenizer(
        sp_model,
        vocab,
        remove_space=bool(settings.get("remove_space", True)),
        keep_accents=bool(settings.get("keep_accents", False)),
        do_lower_case=bool(settings.get("do_lower_case", False)),
        specials=specials,
    )


class HFTextEncoder(HFEncoder):
    """A Hugging Face text model by hub name, alias (see :data:`TEXT_ALIASES`) or directory.

    ``pooling``: "cls" or "mean". ``layer``: "last", "mean" (all transformer layers,
    embeddings excluded) or an index into hidden_states. ``max_length``: tokens per text
    including [CLS]/[SEP], cut further to the model's own limit. ``tokenizer``: "auto"
    (KoBERT's for KoBERT-style checkpoints, else AutoTokenizer), "kobert" or "hf".
    """

    modality: ClassVar[str] = TEXT
    name: ClassVar[str] = "hf-text"

    aliases = TEXT_ALIASES
    spec_defaults = {"pooling": "cls", "layer": "last", "max_length": 128, "tokenizer": "auto"}

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        pooling: str = "cls",
        max_length: int | str = 128,
        tokenizer: str = "auto",
        **common: Any,
    ):
        super().__init__(model, **common)
        self.pooling = parse_choice(pooling, POOLINGS, name="text pooling")
        self.max_length = parse_int(max_length, name="max_length (tokens)", minimum=3)
        self.tokenizer_choice = parse_choice(tokenizer, TOKENIZERS, name="tokenizer")
        self._tokenizer: Any = None
        self._tokenizer_kind: str | None = None
        self._forward_args: set[str] = set()

    def _check_config(self, config: Any) -> None:
        if not hasattr(config, "hidden_size"):
            raise EncoderError(f"{self.source.requested}: no hidden_size in its config")

    @property
    def tokenizer_kind(self) -> str:
        """ "kobert-sentencepiece" or "auto" (AutoTokenizer)."""
        self._get_tokenizer()
        assert self._tokenizer_kind is not None
        return self._tokenizer_kind

    def _get_tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._hf_config()
            kobert = None
            if self.tokenizer_choice != "hf":
                kobert = _kobert_files(self.source, forced=self.tokenizer_choice == "kobert")
            if kobert is not None:
                self._tokenizer = _kobert_tokenizer(*kobert)
                self._tokenizer_kind = "kobert-sentencepiece"
            else:
                self._tokenizer = load_pretrained(self.source, "AutoTokenizer")
                self._tokenizer_kind = "auto"
        return self._tokenizer

    def _load_preprocessor(self) -> Any:
        return self._get_tokenizer()

    def _option_value(self, name: str) -> Any:
        return self.tokenizer_choice if name == "tokenizer" else super()._option_value(name)

    def _settings(self) -> dict[str, Any]:
        # The tokenizer actually used ("auto" resolves to one of the others), not the option.
        options = super()._settings()
        del options["tokenizer"]
        return {"tokenizer": self.tokenizer_kind, **options}

    def _load(self) -> Any:
        first_load = self._model is None
        model = super()._load()
        if first_load:
            # Tokenizers return keys (token_type_ids, ...) that not every model takes.
            self._forward_args = set(inspect.signature(model.forward).parameters)
        return model

    def _effective_max_length(self) -> int:
        limits = [self.max_length, int(getattr(self._hf_config(), "max_position_embeddings", 512))]
        model_max = getattr(self._tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 100_000:
            limits.append(model_max)
        return min(limits)

    def input_plan(self) -> TextInputPlan:
        """What tokenises and pads a batch of texts, apart from the model (in DataLoader
        workers during feature extraction; see :mod:`emofuse.encoders.hf_inputs`)."""
        tokenizer = self._get_tokenizer()
        return TextInputPlan(
            tokenizer, self._effective_max_length(), isinstance(tokenizer, KoBertTokenizer)
        )

    def encode_prepared(self, prepared: Mapping[str, Any]) -> np.ndarray:
        """Vectors for a batch made by :meth:`input_plan` (token ids and masks)."""
        import torch

        self._load()  # sets the device and the names the forward pass takes
        inputs = {
            key: value.to(self.device, non_blocking=True)
            for key, value in prepared.items()
            if key in self._forward_args
        }
        if not len(inputs["input_ids"]):
            return np.zeros((0, self.dim), dtype=np.float32)

        def pool(hidden: torch.Tensor) -> torch.Tensor:
            if self.pooling == "cls":
                return hidden[:, 0].float()
            return masked_pool(hidden, inputs["attention_mask"], "mean")

        return self._pooled(inputs, pool)

    def encode(self, batch: Sequence[str]) -> np.ndarray:  # type: ignore[override]
        if isinstance(batch, str):
            raise EncoderError("encode takes a list of texts, not one string")
        texts = list(batch)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise EncoderError(
                    f"text batch item {index}: expected a string, got {type(text).__name__}"
                )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(self.input_plan()(texts))


def build(options: Mapping[str, str]) -> HFTextEncoder:
    """Registry factory: ``{"model": name_alias_or_dir, "pooling": "mean", ...}``."""
    return build_from_options(HFTextEncoder, options, TEXT)
