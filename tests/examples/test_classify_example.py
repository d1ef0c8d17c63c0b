import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers import load_example

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
classify = load_example("classify")

TINY = ["--epochs", "2", "--train-per-class", "60", "--test-per-class", "20", "--d-model", "16", "--n-heads", "2",
        "--n-layers", "1", "--d-ff", "32", "--seq-len", "24", "--plot", "pca", "--plot-points", "50", "--no-progress"]


def test_end_to_end_outputs_and_predict(tmp_path, capsys):
    assert classify.main(TINY + ["--out", str(tmp_path)]) == 0
    for name in ("metrics.json", "cls_embeddings.gif", "cls_embeddings.png", "confusion.txt", "samples.txt",
                 "model.npz", "vocab.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    gif = Image.open(tmp_path / "cls_embeddings.gif")
    assert gif.n_frames == 2 + 1  # the untrained model, then one frame per epoch
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and "test_accuracy" in metrics["epochs"][0]
    capsys.readouterr()
    assert classify.main(["--predict", "the film was not good .", "--resume", str(tmp_path / "model.npz")]) == 0
    assert "probability" in capsys.readouterr().out


def test_imdb_csv_tutorial_split_runs(shared_data, tmp_path):
    path = shared_data / "imdb_small" / "imdb_small_3000.csv"
    if not path.exists():
        pytest.skip("imdb sample absent")
    args = ["--data", str(path), "--epochs", "1", "--train-per-class", "40", "--test-per-class", "10", "--d-model", "16",
            "--n-heads", "2", "--n-layers", "1", "--d-ff", "32", "--seq-len", "64", "--plot", "none", "--no-progress"]
    assert classify.main(args + ["--out", str(tmp_path)]) == 0


def test_missing_columns_give_one_line_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("review,stars\nfine,5\n", encoding="utf-8")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "classify.py"), "--data", str(bad),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "bad.csv" in result.stderr and "'text'" in result.stderr


def test_wordpiece_tokenizer_trains_saves_and_predicts(tmp_path, capsys):
    pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    args = TINY + ["--tokenizer", "wordpiece", "--vocab-size", "300", "--plot", "none", "--out", str(tmp_path)]
    assert classify.main(args) == 0
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "vocab.txt").exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["tokenizer"] == "wordpiece"
    capsys.readouterr()
    assert classify.main(["--predict", "a wonderful film", "--resume", str(tmp_path / "model.npz")]) == 0
    assert "probability" in capsys.readouterr().out


def test_graph_draws_one_step(tmp_path, capsys):
    assert classify.main(TINY + ["--graph", str(tmp_path / "step.dot"), "--out", str(tmp_path)]) == 0
    assert "measured step memory" in capsys.readouterr().out
    assert "classifier.weight" in (tmp_path / "step.dot").read_text()
