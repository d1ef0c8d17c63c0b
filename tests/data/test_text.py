import numpy as np
import pytest

from tinygrad_nlp import DataError
from tinygrad_nlp.data import (
    SPECIALS,
    MLMBatcher,
    Vocab,
    encode_stream,
    mask_tokens,
    read_lines,
    tokenize,
    word_class_corpus,
    word_class_of,
)
from tinygrad_nlp.data.evaluate import neighbour_purity


def test_tokenizer_follows_the_tutorial():
    assert tokenize("Bonjour, l'Europe (UE)!") == ["bonjour", ",", "l", "'", "europe", "(", "ue", ")", "!"]
    assert tokenize('a/b*c+d-e[f]{g}"h"&i;j:k?l.') == list('a/b*c+d-e[f]{g}"h"&i;j:k?l.')
    assert tokenize("  Deux   ESPACES\tet\nligne ") == ["deux", "espaces", "et", "ligne"]


def test_vocab_build_roundtrip_and_unknown(tmp_path):
    vocab = Vocab.build([["b", "a", "b"], ["c", "b", "a"]], max_size=7)
    assert vocab.itos == list(SPECIALS) + ["b", "a"]
    path = tmp_path / "vocab.txt"
    vocab.save(path)
    again = Vocab.load(path)
    assert again.itos == vocab.itos
    assert list(again.encode(["a", "zzz"])) == [6, vocab.unk_id]
    assert path.read_text(encoding="utf-8").splitlines()[0] == "<pad>"


def test_vocab_smaller_than_specials():
    with pytest.raises(DataError, match=r"vocabulary size 3.*5 special tokens"):
        Vocab.build([["a"]], max_size=3)


def test_corpus_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_lines(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_lines(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8: byte 0xe9 at offset 6"):
        read_lines(tmp_path / "latin1.txt")


def test_folder_of_txt_files(tmp_path):
    (tmp_path / "b.txt").write_text("deux\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("un\n\n", encoding="utf-8")
    (tmp_path / "c.csv").write_text("ignored\n", encoding="utf-8")
    assert read_lines(tmp_path) == ["un", "deux"]


def test_masking_rate_and_targets():
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(50)])
    ids = np.random.default_rng(0).integers(5, 55, (400, 50))
    inputs, targets = mask_tokens(ids, vocab, np.random.default_rng(1))
    chosen = targets != -100
    assert abs(chosen.mean() - 0.15) < 0.005
    assert np.all(targets[chosen] == ids[chosen]) and np.all(inputs[chosen] == vocab.mask_id)
    assert np.all(inputs[~chosen] == ids[~chosen])
    inputs, targets = mask_tokens(ids, vocab, np.random.default_rng(1), bert_masking=True)
    chosen = targets != -100
    share_masked = (inputs[chosen] == vocab.mask_id).mean()
    share_same = (inputs[chosen] == ids[chosen]).mean()
    assert abs(share_masked - 0.8) < 0.02 and 0.08 < share_same < 0.13


def test_batches_are_a_function_of_seed_and_step():
    sentences = word_class_corpus(300, seed=0)
    vocab = Vocab.build(tokenize(s) for s in sentences)
    stream = encode_stream(sentences, vocab)
    batcher = MLMBatcher(stream, vocab, seq_len=12, batch_size=8, seed=3)
    inputs, targets = batcher.batch(5)
    assert inputs.shape == targets.shape == (8, 12) and inputs.dtype == np.int64
    again = MLMBatcher(stream, vocab, seq_len=12, batch_size=8, seed=3).batch(5)
    np.testing.assert_array_equal(inputs, again[0])
    assert not np.array_equal(inputs, MLMBatcher(stream, vocab, 12, 8, seed=4).batch(5)[0])
    held = list(batcher.heldout_batches())
    assert sum(len(b[0]) for b in held) == len(batcher.heldout_rows)
    with pytest.raises(DataError, match="too few"):
        MLMBatcher(stream[:10], vocab, seq_len=12, batch_size=8)


def test_purity_of_perfect_and_random_embeddings():
    classes = word_class_of()
    itos = list(SPECIALS) + list(classes)
    names = sorted(set(classes.values()))
    perfect = np.array([np.eye(16)[0] if w in SPECIALS else np.eye(16)[names.index(classes[w])] +
                        0.01 * np.random.default_rng(i).standard_normal(16) for i, w in enumerate(itos)])
    assert neighbour_purity(perfect, itos, classes) == 1.0
    noise = np.random.default_rng(0).standard_normal((len(itos), 16))
    assert neighbour_purity(noise, itos, classes) < 0.3


def test_europarl_sample(shared_data):
    path = shared_data / "europarl" / "europarl-v7.fr-en.first3000.fr.txt"
    if not path.exists():
        pytest.skip("europarl sample absent")
    lines = read_lines(path)
    tokens = [tokenize(s) for s in lines]
    assert len(lines) == 2994 and sum(map(len, tokens)) == 97844  # 3,000 lines, 6 of them blank
    assert len({t for s in tokens for t in s}) == 7666


def test_the_word_tokenizer_answers_as_wordpiece_does_and_refuses_a_row_without_room(tmp_path):
    from tinygrad_nlp.data import WordTokenizer, load_tokenizer
    tokenizer = WordTokenizer.train(["the film was good", "the film was bad"], vocab_size=20)
    batch = tokenizer.encode(["the film was good", "bad"], 5)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"} and batch["input_ids"].shape == (2, 5)
    assert batch["input_ids"][0, 0] == tokenizer.cls_id and batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    tokenizer.save(tmp_path)
    np.testing.assert_array_equal(load_tokenizer(tmp_path).encode(["bad"], 5)["input_ids"], batch["input_ids"][1:])
    with pytest.raises(DataError, match="max_len must be at least 2"):
        tokenizer.encode(["x"], 1)
