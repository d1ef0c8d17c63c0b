"""WordPiece tokenization: ids, token types and masks identical to transformers'
BertTokenizerFast on the same folder (uncased and cased), on awkward strings and on a
few hundred real reviews when the shared data is present."""
import json

import numpy as np
import pytest

from tinygrad_nlp import DataError, MissingDependencyError
from tinygrad_nlp.data import WordPieceTokenizer, load_reviews

pytest.importorskip("tokenizers", reason="tokenizers is not installed: skipping the WordPiece tests")

AWKWARD = [
    "Café déjà vu! Naïve résumé... SUPERCALIFRAGILISTICEXPIALIDOCIOUS",
    "Hello, WORLD. It's 12:30 -- isn't it?!",
    "<br /><br />The end (really).  Tabs\tand\nnewlines",
    "Ünïcödé ÀÉÎÕÜ ß æ ø 東京 emoji 😀 and a " + "verylongword" * 12,
    "",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen",
]


def training_texts():
    texts, *_ = load_reviews("builtin", 200, 50, seed=0)
    return list(texts) + AWKWARD


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A vocab.txt trained here, as an uncased and a cased checkpoint folder."""
    tokenizer = WordPieceTokenizer.train(training_texts(), vocab_size=400)
    result = {}
    for cased in (False, True):
        folder = tmp_path_factory.mktemp("cased" if cased else "uncased")
        (folder / "vocab.txt").write_text("".join(tokenizer.id_to_token(i) + "\n" for i in range(len(tokenizer))),
                                          encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": not cased}))
        result[cased] = folder
    return result


def assert_same_as_bert_tokenizer_fast(folder, texts, max_len):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    ours = WordPieceTokenizer.from_pretrained(folder).encode(texts, max_len)
    theirs = transformers.BertTokenizerFast.from_pretrained(folder)(
        texts, max_length=max_len, padding="max_length", truncation=True, return_tensors="np")
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[name].dtype == np.int64 and ours[name].shape == (len(texts), max_len)
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


@pytest.mark.parametrize("cased", [False, True])
@pytest.mark.parametrize("max_len", [8, 64])
def test_awkward_strings_match_bert_tokenizer_fast(folders, cased, max_len):
    assert_same_as_bert_tokenizer_fast(folders[cased], AWKWARD, max_len)


@pytest.mark.parametrize("cased", [False, True])
def test_real_reviews_match_bert_tokenizer_fast(folders, cased, shared_data):
    texts, *_ = load_reviews(str(shared_data / "imdb_small" / "imdb_small_3000.csv"), 150, 50, seed=0)
    assert_same_as_bert_tokenizer_fast(folders[cased], list(texts), 128)


def test_tokenizer_json_is_read_and_saved(folders, tmp_path):
    tokenizer = WordPieceTokenizer.from_pretrained(folders[False])
    tokenizer.save(tmp_path)
    again = WordPieceTokenizer.from_pretrained(tmp_path)  # reads tokenizer.json now
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(again.encode(AWKWARD, 32)[name], tokenizer.encode(AWKWARD, 32)[name])


def test_trained_tokenizer_encodes_with_cls_and_sep():
    tokenizer = WordPieceTokenizer.train(training_texts(), vocab_size=300)
    batch = tokenizer.encode(["a good film", "bad"], max_len=6)
    assert (batch["input_ids"][:, 0] == tokenizer.cls_id).all()
    lengths = batch["attention_mask"].sum(1)
    assert (batch["input_ids"][np.arange(2), lengths - 1] == tokenizer.sep_id).all()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_id).all()
    assert len(tokenizer) <= 300


def test_bad_input_is_named(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no tokenizer.json or vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)
    with pytest.raises(DataError, match="vocab_size 5 leaves no room"):
        WordPieceTokenizer.train(["a b c"], vocab_size=5)
    import sys
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(MissingDependencyError, match=r"needs tokenizers: pip install 'tinygrad_nlp\[bert\]'"):
        WordPieceTokenizer.train(["a b c"], vocab_size=50)


def test_encode_needs_room_for_cls_and_sep(folders):
    with pytest.raises(DataError, match="max_len must be at least 2"):
        WordPieceTokenizer.from_pretrained(folders[False]).encode(["x"], max_len=1)
