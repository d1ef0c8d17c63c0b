import os
import tarfile

import numpy as np
import pytest

from tinygrad_nlp import DataError
from tinygrad_nlp.data import (
    Vocab,
    balanced_split,
    download_imdb,
    encode_reviews,
    load_aclimdb,
    load_csv,
    sentiment_corpus,
    tokenize,
)


def test_csv_labels_in_every_form_and_html_removed(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(',text,label\n0,"Great<br /><br />film",Positive\n1,bad,negative\n2,ok,1\n3,meh,NEG\n4,"x, y",pos\n5,z,0\n',
                    encoding="utf-8")
    texts, labels = load_csv(path)
    assert list(labels) == [1, 0, 1, 0, 1, 0]
    assert texts[0] == "Great  film" and texts[4] == "x, y"


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\ngood,pos\nbad,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"r.csv, line 3: label 'maybe'"):
        load_csv(path)
    path.write_text("review,sentiment\ngood,pos\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no 'text' and no 'label' column"):
        load_csv(path)
    path.write_text("text,label\ngood,pos,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: 3 fields where the header has 2"):
        load_csv(path)


def make_aclimdb(root):
    for split in ("train", "test"):
        for name in ("pos", "neg"):
            os.makedirs(root / "aclImdb" / split / name)
            for i in range(3):
                (root / "aclImdb" / split / name / f"{i}_7.txt").write_text(f"{name} review {i}<br />end", encoding="utf-8")


def test_aclimdb_layout(tmp_path):
    make_aclimdb(tmp_path)
    texts, labels = load_aclimdb(tmp_path / "aclImdb", "test")
    assert len(texts) == 6 and list(labels) == [0, 0, 0, 1, 1, 1] and "<br" not in texts[0]
    with pytest.raises(DataError, match="aclImdb layout"):
        load_aclimdb(tmp_path, "train")


def test_download_from_a_local_tarball(tmp_path):
    make_aclimdb(tmp_path / "src")
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    folder = download_imdb(tmp_path / "cache", url=tarball.as_uri())
    assert load_aclimdb(folder, "train")[0]
    assert download_imdb(tmp_path / "cache", url="file:///nonexistent") == folder  # cached: no second download
    with pytest.raises(DataError, match="could not download"):
        download_imdb(tmp_path / "other", url=(tmp_path / "missing.tar.gz").as_uri())


def test_encoding_padding_and_mask():
    vocab = Vocab.build([tokenize("a b c d")])
    ids, mask = encode_reviews(["a b", "a b c d e f g"], vocab, seq_len=5)
    assert ids.shape == mask.shape == (2, 5)
    assert list(ids[0]) == [vocab.cls_id, vocab.stoi["a"], vocab.stoi["b"], vocab.sep_id, vocab.pad_id]
    assert list(mask[0]) == [True, True, True, True, False] and mask[1].all() and ids[1, -1] == vocab.sep_id


def test_balanced_split_is_disjoint_and_seeded():
    labels = np.array([0] * 30 + [1] * 20)
    train, test = balanced_split(labels, 8, 5, seed=1)
    assert len(set(train) & set(test)) == 0
    assert (labels[train] == 0).sum() == 8 and (labels[test] == 1).sum() == 5
    again = balanced_split(labels, 8, 5, seed=1)
    assert np.array_equal(train, again[0]) and not np.array_equal(train, balanced_split(labels, 8, 5, seed=2)[0])
    with pytest.raises(DataError, match="class 1 has 20 rows"):
        balanced_split(labels, 15, 10)


def test_sentiment_corpus_needs_context():
    texts, labels = sentiment_corpus(2000, seed=0)
    assert 0.4 < labels.mean() < 0.6
    negated = [t for t in texts if " not " in f" {t} " or " never " in f" {t} "]
    assert len(negated) > 0.4 * len(texts)
    # the same positive adjective appears in reviews of both labels
    with_good = labels[[("good" in t.split()) for t in texts]]
    assert 0 < with_good.mean() < 1


def test_imdb_small_csv(shared_data):
    path = shared_data / "imdb_small" / "imdb_small_3000.csv"
    if not path.exists():
        pytest.skip("imdb sample absent")
    texts, labels = load_csv(path)
    assert len(texts) == 3000 and labels.sum() == 1489 and not any("<br" in t for t in texts)
