"""A battery of bad inputs through both example scripts, and runs that diverge.

Every bad input ends the script with a non-zero status and one line on stderr that
names the problem and the values, never a traceback. A run whose loss turns NaN stops
with that message and leaves the last good checkpoint loadable.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.examples.test_classify_example import TINY as CLASSIFY_TINY
from tests.examples.test_classify_example import classify
from tests.examples.test_mlm_example import TINY as MLM_TINY
from tests.examples.test_mlm_example import mlm
from tinygrad_nlp import backend, checkpoint
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    message = result.stderr.strip()
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in message and message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (d / "latin1.txt").write_bytes("le café est prêt .\n".encode("latin-1"))
    (d / "empty.csv").write_text("text,label\n", encoding="utf-8")
    (d / "labels.csv").write_text("text,label\ngood film,positive\nbad film,maybe\n", encoding="utf-8")
    backend.manual_seed(0)
    checkpoint.save(d / "classifier.npz", TextClassifier(50, 2, 16, 2, 32, 1, 24))
    checkpoint.save(d / "mlm_other.npz", MaskedLanguageModel(121, 32, 2, 32, 1, 20))
    data = (d / "classifier.npz").read_bytes()
    (d / "truncated.npz").write_bytes(data[:-1])
    return d


MLM_CASES = {
    "cuda without CuPy": (["--device", "cuda"], ["cuda", "pip install"]),
    "missing corpus": (["--corpus", "{d}/nope.txt"], ["nope.txt"]),
    "empty corpus": (["--corpus", "{d}/empty.txt"], ["empty.txt", "empty"]),
    "not UTF-8": (["--corpus", "{d}/latin1.txt"], ["latin1.txt", "UTF-8", "offset 6"]),
    "vocabulary smaller than the special tokens": (["--vocab-size", "3"], ["vocabulary size 3"]),
    "dropout out of range": (["--dropout", "1.5"], ["1.5"]),
    "checkpoint of another model": (["--resume", "{d}/classifier.npz"], ["classifier.npz", "TextClassifier"]),
    "checkpoint of another architecture": (["--resume", "{d}/mlm_other.npz"], ["mlm_other.npz"]),
    "truncated checkpoint": (["--resume", "{d}/truncated.npz"], ["truncated.npz", "truncated or corrupt"]),
}
CLASSIFY_CASES = {
    "cuda without CuPy": (["--device", "cuda"], ["cuda", "pip install"]),
    "missing data": (["--data", "{d}/nope.csv"], ["nope.csv"]),
    "empty CSV": (["--data", "{d}/empty.csv"], ["empty.csv"]),
    "unknown label": (["--data", "{d}/labels.csv"], ["labels.csv", "maybe", "line 3"]),
    "predict without a model": (["--predict", "fine"], ["--resume"]),
    "predict with a corrupt model": (["--predict", "fine", "--resume", "{d}/truncated.npz"], ["truncated or corrupt"]),
    "resume another model": (["--resume", "{d}/mlm_other.npz"], ["mlm_other.npz"]),
}


SCRIPT_CASES = [("mlm.py", MLM_TINY, MLM_CASES[name], name) for name in sorted(MLM_CASES)] + \
    [("classify.py", CLASSIFY_TINY, CLASSIFY_CASES[name], name) for name in sorted(CLASSIFY_CASES)]


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU is present: --device cuda is valid")
@pytest.mark.parametrize("script,tiny,case,name", SCRIPT_CASES, ids=[f"{c[0]}: {c[3]}" for c in SCRIPT_CASES])
def test_script_bad_input(script, tiny, case, name, files, tmp_path):
    args, fragments = case
    args = [a.format(d=files) for a in args]
    assert_one_line_error(run_script(script, *tiny, *args, "--out", tmp_path), *fragments)


def poison_after(n_calls, function):
    """Wrap a loss function so that from call n_calls + 1 on its value is NaN."""
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss = function(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] > n_calls else loss
    return poisoned


def test_mlm_divergence_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    original = MaskedLanguageModel.loss

    def loss(self, *args, **kwargs):
        return (training_loss if self.training else original)(self, *args, **kwargs)
    training_loss = poison_after(8, original)
    monkeypatch.setattr(MaskedLanguageModel, "loss", loss)
    ckpt = tmp_path / "ckpt.npz"
    # one replica, so one loss call per step
    assert mlm.main(MLM_TINY + ["--out", str(tmp_path), "--checkpoint", str(ckpt), "--save-every", "3",
                                "--threads", "1"]) == 1
    message = capsys.readouterr().err.strip()
    assert "training diverged: loss is nan at step 9" in message and str(ckpt) in message
    model = checkpoint.load_model(ckpt)
    assert checkpoint.read(ckpt)[0]["extra"]["step"] == 6
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


def test_classify_divergence_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(F, "cross_entropy", poison_after(6, F.cross_entropy))  # epoch 1 has 4 batches
    assert classify.main(CLASSIFY_TINY + ["--out", str(tmp_path), "--threads", "1"]) == 1  # one loss call a batch
    message = capsys.readouterr().err.strip()
    assert "training diverged: loss is nan in epoch 2" in message and "epoch 1" in message
    assert checkpoint.read(tmp_path / "model.npz")[0]["extra"]["epoch"] == 1
    model = checkpoint.load_model(tmp_path / "model.npz")
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


def test_mlm_never_saves_non_finite_weights(tmp_path, monkeypatch, capsys):
    """Weights that turn NaN while the loss was still finite are caught at the next
    save, which is refused: the checkpoint on disk stays the last good one."""
    from tinygrad_nlp.optim import Adam
    original, calls = Adam.step, {"n": 0}

    def step(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 6:  # after step 6's update, before its save
            self.params[0].data[...] = np.nan
    monkeypatch.setattr(Adam, "step", step)
    ckpt = tmp_path / "ckpt.npz"
    assert mlm.main(MLM_TINY + ["--out", str(tmp_path), "--checkpoint", str(ckpt), "--save-every", "3"]) == 1
    message = capsys.readouterr().err.strip()
    assert "is not finite after step 6" in message and f"the last good checkpoint is {ckpt}" in message
    assert checkpoint.read(ckpt)[0]["extra"]["step"] == 3
