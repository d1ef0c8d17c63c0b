"""The tutorial's word tokenizer and a frequency-ranked vocabulary."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

from ..errors import DataError
from ..files import atomic_write

PUNCTUATION = ',?;.:/*!+-()[]{}"\'&'
_SPACED = str.maketrans({c: f" {c} " for c in PUNCTUATION})

PAD, UNK, MASK, CLS, SEP = "<pad>", "<unk>", "<mask>", "[CLS]", "[SEP]"
SPECIALS = (PAD, UNK, MASK, CLS, SEP)
N_SPECIALS = len(SPECIALS)  # ids 0..N_SPECIALS-1; the words come after


def tokenize(text: str) -> list[str]:
    """Lower-case, put spaces around each of ``,?;.:/*!+-()[]{}"'&``, split on whitespace."""
    return text.lower().translate(_SPACED).split()


class Vocab:
    """Token <-> id. Ids 0..4 are the special tokens <pad>, <unk>, <mask>, [CLS], [SEP];
    then the most frequent tokens, most frequent first (ties in first-seen order)."""

    def __init__(self, tokens):
        self.itos = list(tokens)
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"vocabulary must start with the special tokens {SPECIALS}, got {self.itos[:N_SPECIALS]}")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise DataError("vocabulary has duplicate tokens")
        self.pad_id, self.unk_id, self.mask_id, self.cls_id, self.sep_id = range(len(SPECIALS))

    @classmethod
    def build(cls, sentences, max_size: int | None = None) -> Vocab:
        """From tokenised sentences; ``max_size`` counts the special tokens too."""
        if max_size is not None and max_size <= len(SPECIALS):
            raise DataError(f"vocabulary size {max_size} leaves no room for words: the {len(SPECIALS)} special tokens "
                            f"{SPECIALS} need {len(SPECIALS)} of it (use at least {len(SPECIALS) + 1})")
        counts = Counter(t for s in sentences for t in s)
        for s in SPECIALS:
            counts.pop(s, None)
        words = [w for w, _ in counts.most_common(None if max_size is None else max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, tokens) -> np.ndarray:
        get, unk = self.stoi.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def save(self, path) -> None:
        with atomic_write(path) as f:
            f.write("\n".join(self.itos) + "\n")

    @classmethod
    def load(cls, path) -> Vocab:
        if not os.path.exists(path):
            raise DataError(f"vocabulary file {os.fspath(path)!r} does not exist")
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f if line.rstrip("\n")])


class WordTokenizer:
    """The tutorial's word splitter and a ``Vocab``, answering as ``WordPieceTokenizer``
    does: ``train``, ``encode(texts, max_len)``, ``save`` and ``from_pretrained``."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.pad_id, self.unk_id, self.mask_id, self.cls_id, self.sep_id = (vocab.pad_id, vocab.unk_id, vocab.mask_id,
                                                                            vocab.cls_id, vocab.sep_id)

    @classmethod
    def train(cls, texts, vocab_size: int | None = None) -> WordTokenizer:
        """The ``vocab_size`` most frequent words of ``texts`` (the special tokens first)."""
        return cls(Vocab.build((tokenize(t) for t in texts), max_size=vocab_size))

    @classmethod
    def from_pretrained(cls, folder) -> WordTokenizer:
        return cls(Vocab.load(os.path.join(os.fspath(folder), "vocab.txt")))

    def save(self, folder) -> None:
        os.makedirs(folder, exist_ok=True)
        self.vocab.save(os.path.join(os.fspath(folder), "vocab.txt"))

    def __len__(self):
        return len(self.vocab)

    def encode(self, texts, max_len: int) -> dict:
        """{"input_ids", "token_type_ids", "attention_mask"}: int64 arrays (N, max_len)
        of ``[CLS] words [SEP]``, truncated to ``max_len`` and padded with <pad>."""
        if max_len < 2:
            raise DataError(f"max_len must be at least 2 ([CLS] and [SEP]), got {max_len}")
        ids = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        for i, text in enumerate(texts):
            row = self.vocab.encode(tokenize(text)[: max_len - 2])
            ids[i, 0] = self.cls_id
            ids[i, 1:1 + len(row)] = row
            ids[i, 1 + len(row)] = self.sep_id
        return {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
                "attention_mask": (ids != self.pad_id).astype(np.int64)}

    def decode(self, ids) -> str:
        return " ".join(self.vocab.decode(ids))

    def id_to_token(self, i: int) -> str:
        return self.vocab.itos[int(i)]


def load_tokenizer(folder):
    """The tokenizer saved in ``folder``: a ``WordPieceTokenizer`` where it holds a
    ``tokenizer.json``, else the ``WordTokenizer`` of its ``vocab.txt``."""
    if os.path.isfile(os.path.join(os.fspath(folder), "tokenizer.json")):
        from .wordpiece import WordPieceTokenizer
        return WordPieceTokenizer.from_pretrained(folder)
    return WordTokenizer.from_pretrained(folder)


class CharTokenizer:
    """One id per character of a text (nanoGPT's shakespeare_char): the characters of the
    training text, sorted; ``ids`` and ``decode`` as ``BPETokenizer``'s. Needs nothing
    beyond NumPy."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars):
            raise DataError("CharTokenizer: the characters must be distinct")

    @classmethod
    def train(cls, texts, vocab_size: int | None = None) -> CharTokenizer:
        return cls(sorted(set("".join(texts))))

    @classmethod
    def from_pretrained(cls, folder) -> CharTokenizer:
        path = os.path.join(os.fspath(folder), "chars.json")
        if not os.path.isfile(path):
            raise DataError(f"no chars.json in {os.fspath(folder)!r}")
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def save(self, folder) -> None:
        with atomic_write(os.path.join(os.fspath(folder), "chars.json")) as f:
            json.dump(self.chars, f, ensure_ascii=False)

    def __len__(self):
        return len(self.chars)

    def ids(self, text: str) -> np.ndarray:
        """The ids of ``text``; a DataError naming the first character the vocabulary lacks."""
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            raise DataError(f"CharTokenizer: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)
