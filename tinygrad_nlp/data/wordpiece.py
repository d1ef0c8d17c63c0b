"""BERT's WordPiece tokenization through the Hugging Face ``tokenizers`` library (the
optional extra ``bert``): read from a checkpoint folder, or trained on your own texts.

    tokenizer = WordPieceTokenizer.from_pretrained("bert-base-uncased")   # a local folder
    batch = tokenizer.encode(["A review.", "Another one!"], max_len=128)
    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]  # (2, 128) int64

The ids, token types and masks are those of ``transformers.BertTokenizerFast`` on the same
folder: ``[CLS] pieces [SEP]``, truncated to ``max_len`` and padded with ``[PAD]``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import DataError, MissingDependencyError
from ..files import atomic_path, atomic_write

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise MissingDependencyError("WordPiece tokenization needs tokenizers: pip install 'tinygrad_nlp[bert]'") from None
    return tokenizers


class WordPieceTokenizer:
    """A ``tokenizers.Tokenizer`` set up as BERT's, with NumPy batches out."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        for token in SPECIAL_TOKENS:
            if tokenizer.token_to_id(token) is None:
                raise DataError(f"WordPiece vocabulary lacks the special token {token}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (tokenizer.token_to_id(t)
                                                                            for t in SPECIAL_TOKENS)
        if tokenizer.post_processor is None:  # a freshly trained one: add [CLS] ... [SEP] as BERT's
            processors = _tokenizers().processors
            tokenizer.post_processor = processors.BertProcessing(("[SEP]", self.sep_id), ("[CLS]", self.cls_id))

    @classmethod
    def from_pretrained(cls, folder) -> WordPieceTokenizer:
        """From a checkpoint folder's ``tokenizer.json`` or, without one, its ``vocab.txt``
        (lower-cased unless ``tokenizer_config.json`` says ``"do_lower_case": false``;
        accents stripped when lower-casing, unless it sets ``strip_accents``)."""
        folder = os.fspath(folder)
        tokenizers = _tokenizers()
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return cls(tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")))
        vocab = os.path.join(folder, "vocab.txt")
        if not os.path.isfile(vocab):
            raise DataError(f"no tokenizer.json or vocab.txt in {folder!r}")
        settings = {}
        if os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
            with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
                settings = json.load(f)
        lowercase = settings.get("do_lower_case", True)
        wordpiece = tokenizers.implementations.BertWordPieceTokenizer(
            vocab, lowercase=lowercase, strip_accents=settings.get("strip_accents"),
            handle_chinese_chars=settings.get("tokenize_chinese_chars", True), clean_text=True)
        return cls(wordpiece._tokenizer)

    @classmethod
    def train(cls, texts, vocab_size: int = 8000, lowercase: bool = True, min_frequency: int = 2) -> WordPieceTokenizer:
        """A WordPiece vocabulary of at most ``vocab_size`` pieces (the five special
        tokens first) learnt from ``texts``, with BERT's normalisation."""
        if vocab_size <= len(SPECIAL_TOKENS):
            raise DataError(f"WordPiece vocab_size {vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} "
                            "special tokens")
        wordpiece = _tokenizers().implementations.BertWordPieceTokenizer(lowercase=lowercase)
        wordpiece.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False)
        return cls(wordpiece._tokenizer)

    def __len__(self):
        return self.tokenizer.get_vocab_size()

    def encode(self, texts, max_len: int) -> dict:
        """{"input_ids", "token_type_ids", "attention_mask"}: int64 arrays (N, max_len)
        of ``[CLS] pieces [SEP]``, truncated to ``max_len`` and padded with [PAD]."""
        if max_len < 2:
            raise DataError(f"max_len must be at least 2 ([CLS] and [SEP]), got {max_len}")
        tokenizer = self.tokenizer
        tokenizer.enable_truncation(max_len)
        tokenizer.enable_padding(length=max_len, pad_id=self.pad_id, pad_token="[PAD]")
        encodings = tokenizer.encode_batch(list(texts))
        return {name: np.array([getattr(e, attr) for e in encodings], dtype=np.int64).reshape(len(encodings), max_len)
                for name, attr in (("input_ids", "ids"), ("token_type_ids", "type_ids"),
                                   ("attention_mask", "attention_mask"))}

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.id_to_token(int(i))

    def save(self, folder) -> None:
        """Write ``tokenizer.json`` and ``vocab.txt`` (ids in order) to ``folder``."""
        with atomic_path(os.path.join(os.fspath(folder), "tokenizer.json"), suffix=".json") as path:
            self.tokenizer.save(path)
        vocab = sorted(self.tokenizer.get_vocab().items(), key=lambda item: item[1])
        with atomic_write(os.path.join(os.fspath(folder), "vocab.txt")) as f:
            f.write("".join(token + "\n" for token, _ in vocab))
