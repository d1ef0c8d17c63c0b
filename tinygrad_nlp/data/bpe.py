"""Hugging Face tokenizers through the ``tokenizers`` library: any folder's
``tokenizer.json`` (``PretrainedTokenizer``: GPT-2's, Llama's, SmolLM's; ids equal
``transformers.AutoTokenizer``'s on the same file), and GPT-2's byte-level BPE
(``BPETokenizer``), read from a GPT-2 folder (``tokenizer.json``, or ``vocab.json`` +
``merges.txt``; ids equal ``GPT2TokenizerFast``'s) or trained on your own texts."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..errors import DataError, MissingDependencyError
from ..files import atomic_path, atomic_write
from .tokenizer import CharTokenizer

END_OF_TEXT = "<|endoftext|>"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise MissingDependencyError("tokenizer.json files and byte-level BPE need the tokenizers package: "
                                     "pip install 'tinygrad_nlp[bert]'") \
            from None
    return tokenizers


class PretrainedTokenizer:
    """A folder's ``tokenizer.json`` (a ``tokenizers.Tokenizer``: its normalizer,
    pre-tokenizer, model, post-processor and decoder as the file says), used as
    transformers' ``AutoTokenizer`` uses it: ``ids`` adds the special tokens the file's
    post-processor adds (Llama's ``<s>`` or ``<|begin_of_text|>``, none for GPT-2's), and
    ``decode`` keeps them."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, folder):
        path = os.path.join(os.fspath(folder), "tokenizer.json")
        if not os.path.isfile(path):
            raise DataError(f"no tokenizer.json in {os.fspath(folder)!r}")
        try:
            return cls(_tokenizers().Tokenizer.from_file(path))
        except Exception as e:  # the tokenizers library's own parse error (a bare Exception)
            raise DataError(f"{path!r} is not a tokenizer the tokenizers library reads ({e})") from None

    def __len__(self):
        return self.tokenizer.get_vocab_size()

    def ids(self, text: str) -> np.ndarray:
        """The ids of one text, int64, with the special tokens the file adds."""
        return np.array(self.tokenizer.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        """The text of ``ids``, special tokens included (as ``AutoTokenizer.decode``)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, folder) -> None:
        """Write ``tokenizer.json`` in ``folder`` (atomically)."""
        with atomic_path(os.path.join(os.fspath(folder), "tokenizer.json"), suffix=".json") as path:
            self.tokenizer.save(path)


class BPETokenizer(PretrainedTokenizer):
    """A ``tokenizers.Tokenizer`` set up as GPT-2's: bytes mapped to printable characters,
    GPT-2's pre-tokenizing pattern, no prefix space, ``<|endoftext|>`` its one special token."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.eos_id = tokenizer.token_to_id(END_OF_TEXT)
        if self.eos_id is None:
            raise DataError(f"byte-level BPE vocabulary lacks the special token {END_OF_TEXT}")

    @classmethod
    def from_pretrained(cls, folder) -> BPETokenizer:
        folder = os.fspath(folder)
        tokenizers = _tokenizers()
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return super().from_pretrained(folder)
        vocab, merges = (os.path.join(folder, name) for name in ("vocab.json", "merges.txt"))
        if not (os.path.isfile(vocab) and os.path.isfile(merges)):
            raise DataError(f"no tokenizer.json, or vocab.json and merges.txt, in {folder!r}")
        bpe = tokenizers.ByteLevelBPETokenizer(vocab, merges, add_prefix_space=False)
        bpe.add_special_tokens([END_OF_TEXT])  # as GPT2TokenizerFast does from these two files
        return cls(bpe._tokenizer)

    @classmethod
    def train(cls, texts, vocab_size: int = 2000, min_frequency: int = 2) -> BPETokenizer:
        """A vocabulary of at most ``vocab_size``: the 256 bytes, ``<|endoftext|>`` and the
        most frequent merges of ``texts``."""
        if vocab_size <= 257:
            raise DataError(f"byte-level BPE vocab_size {vocab_size} leaves no room for merges beside the 256 bytes "
                            f"and {END_OF_TEXT} (use at least 258)")
        bpe = _tokenizers().ByteLevelBPETokenizer(add_prefix_space=False)
        bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                                special_tokens=[END_OF_TEXT], show_progress=False)
        return cls(bpe._tokenizer)

    def encode(self, texts, max_len: int) -> dict:
        """{"input_ids", "attention_mask"}: int64 arrays (N, max_len), each text's ids
        truncated to ``max_len`` and padded with ``<|endoftext|>`` (mask 0 there)."""
        ids = np.full((len(texts), max_len), self.eos_id, dtype=np.int64)
        mask = np.zeros((len(texts), max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            row = self.ids(text)[:max_len]
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return {"input_ids": ids, "attention_mask": mask}

    def save(self, folder) -> None:
        """Write a GPT-2 folder's tokenizer files: ``tokenizer.json``, ``vocab.json``,
        ``merges.txt`` and ``tokenizer_config.json`` (which tells transformers that
        ``<|endoftext|>`` is the special token)."""
        folder = os.fspath(folder)
        super().save(folder)
        with atomic_write(os.path.join(folder, "tokenizer_config.json")) as f:
            json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT,
                       "unk_token": END_OF_TEXT, "add_prefix_space": False}, f, indent=2)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            self.tokenizer.model.save(scratch)  # vocab.json and merges.txt
            for name in ("vocab.json", "merges.txt"):
                with atomic_path(os.path.join(folder, name)) as path:
                    os.replace(os.path.join(scratch, name), path)


def folder_tokenizer(folder):
    """The tokenizer a decoder's folder holds: ``chars.json`` (``CharTokenizer``), else its
    ``tokenizer.json`` (``PretrainedTokenizer``), else GPT-2's ``vocab.json`` and
    ``merges.txt`` (``BPETokenizer``); a DataError naming the folder without any."""
    folder = os.fspath(folder)
    if os.path.isfile(os.path.join(folder, "chars.json")):
        return CharTokenizer.from_pretrained(folder)
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return PretrainedTokenizer.from_pretrained(folder)
    if os.path.isfile(os.path.join(folder, "vocab.json")) and os.path.isfile(os.path.join(folder, "merges.txt")):
        return BPETokenizer.from_pretrained(folder)
    raise DataError(f"no tokenizer in {folder!r}: expected chars.json, tokenizer.json, or vocab.json and merges.txt")


__all__ = ["PretrainedTokenizer", "BPETokenizer", "END_OF_TEXT", "folder_tokenizer"]
