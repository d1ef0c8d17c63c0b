import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import load_example
from tinygrad_nlp import backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
mlm = load_example("mlm")

TINY = ["--steps", "12", "--batch-size", "16", "--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32",
        "--builtin-sentences", "800", "--eval-every", "6", "--no-progress", "--lr", "3e-3", "--warmup", "2"]


def test_end_to_end_writes_every_output(tmp_path, capsys):
    assert mlm.main(TINY + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("values.tsv", "names.tsv", "metrics.json", "loss.png", "neighbours.txt", "fill_mask.txt", "vocab.txt"):
        assert (tmp_path / name).stat().st_size > 0, name
    values = np.loadtxt(tmp_path / "values.tsv", delimiter="\t")
    names = (tmp_path / "names.tsv").read_text(encoding="utf-8").splitlines()
    assert values.shape == (len(names), 16)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == 12 and metrics["seed"] == 0 and "neighbour_class_purity" in metrics
    assert [e["step"] for e in metrics["eval"]] == [6, 12]
    assert metrics["threads"] == backend.default_threads("cpu")  # one replica per core unless told
    assert "projector.tensorflow.org" in out and "fill-mask" in out


@pytest.mark.parametrize("threads", ["1", "2"])
def test_same_seed_same_losses_and_resume_is_exact(tmp_path, threads):
    pytest.importorskip("threadpoolctl")
    TINY = globals()["TINY"] + ["--threads", threads]  # noqa: N806
    a, b = tmp_path / "a", tmp_path / "b"
    assert mlm.main(TINY + ["--out", str(a)]) == 0
    assert mlm.main(TINY + ["--out", str(b)]) == 0
    straight = json.loads((a / "metrics.json").read_text())["train_loss"]
    assert straight == json.loads((b / "metrics.json").read_text())["train_loss"]
    c = tmp_path / "c"
    ckpt = str(tmp_path / "ckpt.npz")
    first = TINY.copy()
    first[first.index("--steps") + 1] = "7"
    assert mlm.main(first + ["--out", str(c), "--checkpoint", ckpt]) == 0
    assert mlm.main(TINY + ["--out", str(c), "--resume", ckpt]) == 0
    assert json.loads((c / "metrics.json").read_text())["train_loss"] == straight
    d = tmp_path / "d"
    assert mlm.main(TINY + ["--out", str(d), "--seed", "1"]) == 0
    assert json.loads((d / "metrics.json").read_text())["train_loss"] != straight


def test_reference_mode_trains_on_the_textbook_ops_to_the_same_losses(tmp_path, monkeypatch):
    """--reference: every op on its textbook code (the same dropout masks, the same
    batches), the losses of the default run to float32 rounding; the mode ends with the run."""
    chosen = []
    implementation = backend.kernels.implementation
    monkeypatch.setattr(backend.kernels, "implementation", lambda node, arrays: chosen.append(
        cls := implementation(node, arrays)) or cls)
    runs = {}
    for name, extra in (("default", []), ("reference", ["--reference"])):
        chosen.clear()
        assert mlm.main(TINY + ["--threads", "1", "--out", str(tmp_path / name)] + extra) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())["train_loss"]
        fast = {cls.__name__ for cls in chosen if getattr(cls, "speeds_up", None)}
        assert bool(fast) is (name == "default"), fast
        assert not backend.kernels.in_reference_mode()
    np.testing.assert_allclose(runs["reference"], runs["default"], rtol=2e-5)


def test_training_improves_loss_and_purity(tmp_path):
    """A short run (seconds) on the built-in corpus: held-out loss falls and neighbour
    purity rises above its value at initialisation."""
    args = ["--steps", "500", "--batch-size", "32", "--d-model", "32", "--n-heads", "2", "--n-layers", "1",
            "--d-ff", "64", "--builtin-sentences", "3000", "--eval-every", "1000", "--no-progress", "--lr", "1e-2"]
    start = tmp_path / "start"
    assert mlm.main(args[:1] + ["1"] + args[2:] + ["--out", str(start)]) == 0
    assert mlm.main(args + ["--out", str(tmp_path / "end")]) == 0
    m0 = json.loads((start / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "end" / "metrics.json").read_text())
    assert m1["final_heldout_loss"] < m0["final_heldout_loss"] - 0.5
    assert m1["neighbour_class_purity"] > m0["neighbour_class_purity"] + 0.2
    assert m1["final_masked_accuracy"] > m1["frequency_baseline_accuracy"]


def test_bad_input_gives_one_line_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xff\n")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "mlm.py"), "--corpus", str(bad),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "offset 3" in result.stderr
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "mlm.py"), "--vocab-size", "4",
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr and "vocabulary size 4" in result.stderr


@pytest.mark.slow
def test_europarl_tutorial_setting_runs(shared_data, tmp_path):
    path = shared_data / "europarl" / "europarl-v7.fr-en.first3000.fr.txt"
    if not path.exists():
        pytest.skip("europarl sample absent")
    args = ["--corpus", str(path), "--steps", "15", "--batch-size", "32", "--n-layers", "2", "--eval-every", "15",
            "--no-progress", "--out", str(tmp_path)]
    assert mlm.main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["vocab_size"] == 7666 + 5
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]


def test_graph_draws_one_step_of_a_one_layer_model_and_compares_memory(tmp_path, capsys):
    assert mlm.main(["--graph", str(tmp_path / "step.dot"), "--builtin-sentences", "300", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "saved for backward" in out and "measured step memory" in out
    dot = (tmp_path / "step.dot").read_text()
    assert len(re.findall(r"\d+\. Linear\\n", dot)) == 4 and "PackedSelfAttention" in dot and "encoder.layers.0." in dot
    assert "encoder.layers.1." not in dot  # a one-layer model
