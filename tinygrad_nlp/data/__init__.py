"""Tokenizer, vocabulary, corpora, MLM masking/batching and labelled-review loaders."""
from .bpe import END_OF_TEXT, BPETokenizer, PretrainedTokenizer, folder_tokenizer
from .corpus import read_lines, read_text
from .generated import WORD_CLASSES, sentiment_corpus, word_class_corpus, word_class_of
from .mlm import MLMBatcher, encode_stream, mask_tokens
from .reviews import balanced_split, clean_html, download_imdb, encode_reviews, load_aclimdb, load_csv, load_reviews
from .tokenizer import (
           CLS,
           MASK,
           N_SPECIALS,
           PAD,
           PUNCTUATION,
           SEP,
           SPECIALS,
           UNK,
           CharTokenizer,
           Vocab,
           WordTokenizer,
           load_tokenizer,
           tokenize,
)
from .wordpiece import WordPieceTokenizer

__all__ = ["read_lines", "read_text", "WORD_CLASSES", "sentiment_corpus", "word_class_corpus", "word_class_of",
           "MLMBatcher", "encode_stream", "mask_tokens", "CLS", "MASK", "N_SPECIALS", "PAD", "PUNCTUATION", "SEP",
           "SPECIALS", "UNK", "Vocab", "WordTokenizer", "load_tokenizer", "tokenize", "balanced_split", "clean_html",
           "download_imdb", "encode_reviews", "load_aclimdb", "load_csv", "load_reviews", "WordPieceTokenizer",
           "BPETokenizer", "PretrainedTokenizer", "folder_tokenizer", "END_OF_TEXT", "CharTokenizer"]
