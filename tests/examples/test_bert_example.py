"""examples/bert.py on a tiny BERT checkpoint made here (random weights, a WordPiece
vocabulary trained on the built-in reviews): fill-mask, fine-tuning with its outputs,
and the one-line error without a checkpoint."""
import json

import pytest

from tests.helpers import load_example, tiny_bert_checkpoint

pytest.importorskip("tokenizers", reason="tokenizers is not installed")
pytest.importorskip("safetensors", reason="safetensors is not installed")
bert = load_example("bert")


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


def test_fill_mask_prints_candidates(checkpoint_folder, capsys):
    assert bert.main(["fill-mask", "--model", str(checkpoint_folder), "--top-k", "3", "the film was [MASK] ."]) == 0
    out = capsys.readouterr().out
    assert "the film was [MASK] ." in out and out.count("(0.") >= 3


def test_classify_fine_tunes_and_writes_outputs(checkpoint_folder, tmp_path):
    args = ["classify", "--model", str(checkpoint_folder), "--epochs", "1", "--train-per-class", "16",
            "--test-per-class", "8", "--batch-size", "8", "--seq-len", "24", "--lr", "1e-3", "--no-progress",
            "--out", str(tmp_path)]
    with pytest.warns(UserWarning, match="bert.pooler.weight, bert.pooler.bias, classifier.weight, classifier.bias not in"):
        assert bert.main(args) == 0
    for name in ("metrics.json", "cls_embeddings.gif", "confusion.txt", "samples.txt", "model/config.json",
                 "model/model.safetensors", "model/tokenizer.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"][0]["epoch"] == 1 and 0 <= metrics["final_test_accuracy"] <= 1


def test_without_a_checkpoint_it_says_so_in_one_line(tmp_path, capsys):
    assert bert.main(["fill-mask", "--model", str(tmp_path / "absent"), "x [MASK]"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no BERT checkpoint at" in err and "README" in err
