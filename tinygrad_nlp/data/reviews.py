"""Labelled reviews for the [CLS] classifier: IMDB CSV, the aclImdb folder layout, the
official tarball download, and encoding to [CLS] ... [SEP] rows with a padding mask."""
from __future__ import annotations

import csv
import glob
import io
import os
import re
import shutil
import tarfile
import urllib.request

import numpy as np

from ..errors import DataError
from ..files import atomic_write
from .corpus import read_text
from .generated import sentiment_corpus
from .tokenizer import Vocab, WordTokenizer

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_html(text: str) -> str:
    """Remove HTML line breaks (IMDB reviews are full of ``<br /><br />``)."""
    return _HTML_BREAK.sub(" ", text)


def parse_label(value: str, where: str) -> int:
    label = _LABELS.get(value.strip().lower())
    if label is None:
        raise DataError(f"{where}: label {value!r} is not one of 0/1, neg/pos, negative/positive")
    return label


def load_csv(path):
    """(texts, labels) from a CSV with ``text`` and ``label`` columns (others ignored)."""
    content = read_text(path)
    reader = csv.reader(io.StringIO(content, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{os.fspath(path)}: the CSV file is empty")
    columns = [h.strip().lower() for h in header]
    missing = [c for c in ("text", "label") if c not in columns]
    if missing:
        raise DataError(f"{os.fspath(path)}: no {' and no '.join(repr(m) for m in missing)} column (header: {header})")
    text_col, label_col = columns.index("text"), columns.index("label")
    texts, labels = [], []
    for row in reader:
        where = f"{os.fspath(path)}, line {reader.line_num}"
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields where the header has {len(header)}")
        labels.append(parse_label(row[label_col], where))
        texts.append(clean_html(row[text_col]))
    if not texts:
        raise DataError(f"{os.fspath(path)}: the CSV file has a header but no rows")
    return texts, np.array(labels, dtype=np.int64)


def load_aclimdb(folder, split: str = "train"):
    """(texts, labels) from ``folder/<split>/{pos,neg}/*.txt`` (the aclImdb layout)."""
    texts, labels = [], []
    for name, label in (("neg", 0), ("pos", 1)):
        files = sorted(glob.glob(os.path.join(os.fspath(folder), split, name, "*.txt")))
        for f in files:
            texts.append(clean_html(read_text(f)))
            labels.append(label)
    if not texts:
        raise DataError(f"{os.fspath(folder)!r} has no {split}/pos/*.txt or {split}/neg/*.txt reviews (aclImdb layout)")
    return texts, np.array(labels, dtype=np.int64)


def download_imdb(cache_dir=None, url: str = IMDB_URL) -> str:
    """Download and unpack ``aclImdb_v1.tar.gz`` into ``cache_dir`` (default
    ~/.cache/tinygrad_nlp) once; return the path of the ``aclImdb`` folder."""
    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".cache", "tinygrad_nlp"))
    target = os.path.join(cache_dir, "aclImdb")
    if os.path.isdir(os.path.join(target, "train")):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    archive = os.path.join(cache_dir, os.path.basename(url) or "aclImdb_v1.tar.gz")
    if not os.path.exists(archive):
        try:
            with urllib.request.urlopen(url) as response, atomic_write(archive, "wb", suffix=".part") as out:
                shutil.copyfileobj(response, out)
        except Exception as e:
            raise DataError(f"could not download {url}: {e}") from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(cache_dir, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive} is not a readable .tar.gz ({e}); delete it and try again") from None
    if not os.path.isdir(target):
        raise DataError(f"{archive} did not contain an aclImdb/ folder")
    return target


def encode_reviews(texts, vocab: Vocab, seq_len: int):
    """(ids, mask): rows ``[CLS] tokens... [SEP]`` truncated to ``seq_len`` and padded
    with <pad>; mask (N, seq_len) is True on real tokens."""
    ids = WordTokenizer(vocab).encode(texts, seq_len)["input_ids"]
    return ids, ids != vocab.pad_id


def balanced_split(labels, train_per_class: int, test_per_class: int, seed: int = 0):
    """Index arrays (train, test): N and M rows of each class, disjoint, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) < train_per_class + test_per_class:
            raise DataError(f"class {c} has {len(rows)} rows, fewer than the {train_per_class} + {test_per_class} asked for")
        train.append(rows[:train_per_class])
        test.append(rows[train_per_class:train_per_class + test_per_class])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_reviews(source: str, train_per_class: int, test_per_class: int, seed: int = 0, cache_dir=None):
    """(train_texts, train_labels, test_texts, test_labels), balanced per class, from
    ``source``: "builtin" (the generated sentiment corpus), a CSV (text,label), an
    ``aclImdb`` folder (its own train/test split), or "imdb" (download the tarball)."""
    if source == "builtin":
        texts, labels = sentiment_corpus(4 * (train_per_class + test_per_class), seed=seed)
    elif source == "imdb" or os.path.isdir(source):
        folder = download_imdb(cache_dir) if source == "imdb" else source
        texts, labels = load_aclimdb(folder, "train")
        if os.path.isdir(os.path.join(folder, "test")):
            test_texts, test_labels = load_aclimdb(folder, "test")
            train, _ = balanced_split(labels, train_per_class, 0, seed)
            _, test = balanced_split(test_labels, 0, test_per_class, seed)
            return [texts[i] for i in train], labels[train], [test_texts[i] for i in test], test_labels[test]
    else:
        texts, labels = load_csv(source)
    train, test = balanced_split(labels, train_per_class, test_per_class, seed)
    return [texts[i] for i in train], labels[train], [texts[i] for i in test], labels[test]
