"""One seed, one run on any number of workers: every example, with its default
dropout, gives the same losses with 1 or 2 thread replicas and with 1 or 2 MPI
processes (each dropout mask is drawn per example, ``backend.random``), up to the
order of floating-point sums. The MPI half skips with one line without mpi4py or
mpirun."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import EXAMPLES, load_example, tiny_bert_checkpoint

TINY = {
    "mlm": ["--steps", "12", "--builtin-sentences", "600", "--n-layers", "2", "--batch-size", "10", "--d-model", "16",
            "--n-heads", "2", "--d-ff", "32", "--eval-every", "100"],
    "classify": ["--epochs", "2", "--train-per-class", "30", "--test-per-class", "8", "--d-model", "16", "--n-heads", "2",
                 "--n-layers", "2", "--d-ff", "32", "--seq-len", "24", "--batch-size", "15", "--plot", "none"],
    "gpt": ["--steps", "10", "--batch-size", "9", "--context", "16", "--d-model", "16", "--n-heads", "2", "--n-layers", "2",
            "--builtin-sentences", "300", "--eval-every", "10", "--sample-tokens", "4"],
    "bert": ["classify", "--epochs", "2", "--train-per-class", "12", "--test-per-class", "4", "--batch-size", "8",
             "--seq-len", "24", "--lr", "1e-3"],
}


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny BERT checkpoint (random weights, a WordPiece vocabulary of the built-in reviews)."""
    pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny-bert"), layers=2, reviews=60, vocab_size=150)


def arguments(example, out, request):
    args = TINY[example] + ["--no-progress", "--out", str(out)]
    if example == "bert":
        args[1:1] = ["--model", str(request.getfixturevalue("bert_folder"))]
    return args


def losses(out) -> np.ndarray:
    """The training losses a run wrote: per step, or per epoch."""
    metrics = json.loads((out / "metrics.json").read_text())
    if "train_loss" in metrics:
        return np.array(metrics["train_loss"])
    return np.array([epoch["train_loss"] for epoch in metrics["epochs"]])


def assert_same_losses(a, b):
    assert a.shape == b.shape and len(a) >= 2
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), (a, b)


@pytest.mark.filterwarnings("ignore:.*not in.*:UserWarning")  # the BERT head a fine-tuning starts afresh
@pytest.mark.parametrize("example", sorted(TINY))
def test_one_and_two_thread_replicas_give_the_same_losses_with_dropout(example, tmp_path, request):
    main = load_example(example).main
    for threads in ("1", "2"):
        assert main(arguments(example, tmp_path / threads, request) + ["--threads", threads]) == 0
    assert_same_losses(losses(tmp_path / "1"), losses(tmp_path / "2"))


def mpirun(n, args, timeout=300):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run = subprocess.run(["mpirun", "-n", str(n), "--oversubscribe", sys.executable, "-m", "mpi4py", *args],
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.filterwarnings("ignore:.*not in.*:UserWarning")
@pytest.mark.parametrize("example", sorted(TINY))
def test_one_and_two_processes_give_the_same_losses_with_dropout(example, tmp_path, request):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: skipping the data-parallel tests")
    if not shutil.which("mpirun"):
        pytest.skip("mpirun is not installed: skipping the data-parallel tests")
    script = os.path.join(EXAMPLES, f"{example}.py")
    one = subprocess.run([sys.executable, script, *arguments(example, tmp_path / "one", request), "--threads", "1"],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    mpirun(2, [script, *arguments(example, tmp_path / "two", request), "--threads", "1"])
    assert json.loads((tmp_path / "two" / "metrics.json").read_text()).get("world_size", 2) == 2
    assert_same_losses(losses(tmp_path / "one"), losses(tmp_path / "two"))
