"""Data-parallel training under mpirun with 2 processes: the same losses and final
parameters as one process with the same global batch and seed, dropout on; a failing or killed
rank ends the whole job quickly, and the last checkpoint still loads. Skipped with one
line without mpi4py or mpirun."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import kill_a_rank_after_a_checkpoint
from tinygrad_nlp import checkpoint
from tinygrad_nlp.distributed import Communicator
from tinygrad_nlp.nn import share

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLM = os.path.join(ROOT, "examples", "mlm.py")
SMALL = ["--steps", "30", "--builtin-sentences", "2000", "--n-layers", "1", "--batch-size", "16",
         "--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--eval-every", "100", "--no-progress"]


def needs_mpi():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: skipping the data-parallel tests")
    if not shutil.which("mpirun"):
        pytest.skip("mpirun is not installed: skipping the data-parallel tests")


def mpirun(n, *args, **kwargs):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.Popen(["mpirun", "-n", str(n), "--oversubscribe", sys.executable, "-m", "mpi4py", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def one_and_two_processes(tmp_path, script, *args):
    """Run ``script`` with ``args`` in one process (into tmp_path/one) and under mpirun
    with two (tmp_path/two); both runs' metrics.json."""
    import json
    one = subprocess.run([sys.executable, script, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = mpirun(2, script, *args, "--out", str(tmp_path / "two"))
    _, err = two.communicate(timeout=300)
    assert two.returncode == 0, err
    return [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two")]


def parameters_of(path):
    """All of a checkpoint's parameters as one float64 vector, without the key part of
    each QKV bias: its gradient is zero (softmax ignores a constant added to every score),
    so Adam divides rounding noise by its own size there, and the noise of a two-way sum
    differs from the one-process sum's (seen: 1e-3 apart after a few steps)."""
    _, arrays = checkpoint.read(path)
    parts = []
    for name, value in arrays.items():
        if name.endswith("qkv.bias"):
            d = value.size // 3
            value = np.concatenate([value[:d], value[2 * d:]])
        if name.startswith("model/"):
            parts.append(value.ravel())
    return np.concatenate(parts).astype(np.float64)


def test_shares_cover_the_batch_in_rank_order():
    parts = [share(10, 3, r) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 7), (7, 10)]


def test_two_processes_give_the_one_process_losses_and_parameters(tmp_path):
    needs_mpi()
    import json
    one = subprocess.run([sys.executable, MLM, *SMALL, "--out", str(tmp_path / "one"),
                          "--checkpoint", str(tmp_path / "one.npz")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = mpirun(2, MLM, *SMALL, "--out", str(tmp_path / "two"), "--checkpoint", str(tmp_path / "two.npz"))
    out, err = two.communicate(timeout=300)
    assert two.returncode == 0, err
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert b["world_size"] == 2 and b["rows_per_process"] == [8, 8]
    losses_a, losses_b = np.array(a["train_loss"]), np.array(b["train_loss"])
    assert len(losses_b) == 30 and np.abs(losses_a - losses_b).max() <= 1e-5 * np.abs(losses_a).max()
    a, b = parameters_of(tmp_path / "one.npz"), parameters_of(tmp_path / "two.npz")
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_an_error_on_one_rank_ends_the_job_with_its_message(tmp_path):
    needs_mpi()
    script = tmp_path / "fail.py"
    script.write_text(
        "import time\n"
        "from tinygrad_nlp import distributed\n"
        "comm = distributed.init()\n"
        "if comm.rank == 1:\n"
        "    comm.abort('error: rank one found a bad batch')\n"
        "comm.barrier()\n"
        "time.sleep(120)\n")
    started = time.time()
    job = mpirun(2, str(script))
    _, err = job.communicate(timeout=60)
    assert job.returncode != 0 and time.time() - started < 30
    assert "rank 1/2: error: rank one found a bad batch" in err


def rank_pid(marker, rank):
    """The pid of the process of rank ``rank`` whose command line holds ``marker``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            environ = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and f"OMPI_COMM_WORLD_RANK={rank}\0" in environ:
            return int(pid)
    return None


def test_a_killed_rank_ends_the_job_and_the_checkpoint_still_loads(tmp_path):
    needs_mpi()
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to find the rank's process")
    path = tmp_path / "run.npz"
    args = [a if a != "30" else "100000" for a in SMALL]
    job = mpirun(2, MLM, *args, "--out", str(tmp_path / "out"), "--checkpoint", str(path), "--save-every", "5")
    kill_a_rank_after_a_checkpoint(job, path, lambda: rank_pid(str(tmp_path / "out"), 1))


def test_classifier_with_padding_and_uneven_shares_matches_one_process(tmp_path):
    needs_mpi()
    classify = os.path.join(ROOT, "examples", "classify.py")
    args = ["--epochs", "2", "--train-per-class", "40", "--test-per-class", "10", "--d-model", "16", "--n-heads", "2",
            "--n-layers", "1", "--d-ff", "32", "--seq-len", "24", "--batch-size", "15",
            "--plot", "none", "--no-progress"]
    a, b = one_and_two_processes(tmp_path, classify, *args)
    assert b["world_size"] == 2 and b["rows_per_process"] == [8, 7]
    for x, y in zip(a["epochs"], b["epochs"]):
        assert abs(x["train_loss"] - y["train_loss"]) <= 1e-5 * abs(x["train_loss"])
        assert x["train_accuracy"] == y["train_accuracy"]
    a, b = parameters_of(tmp_path / "one" / "model.npz"), parameters_of(tmp_path / "two" / "model.npz")
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_resume_with_a_different_number_of_processes(tmp_path):
    needs_mpi()
    import json
    half = [a if a != "30" else "15" for a in SMALL]
    first = mpirun(2, MLM, *half, "--out", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "run.npz"))
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    resumed = subprocess.run([sys.executable, MLM, *SMALL, "--out", str(tmp_path / "b"), "--resume",
                              str(tmp_path / "run.npz")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([sys.executable, MLM, *SMALL, "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    losses_b = np.array(json.loads((tmp_path / "b" / "metrics.json").read_text())["train_loss"])
    losses_c = np.array(json.loads((tmp_path / "c" / "metrics.json").read_text())["train_loss"])
    assert len(losses_b) == 30 and np.abs(losses_b - losses_c).max() <= 1e-5 * np.abs(losses_c).max()


def test_without_mpi4py_under_a_launcher_the_error_names_the_extra(monkeypatch):
    from tinygrad_nlp import MissingDependencyError, distributed
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(MissingDependencyError, match=r"needs mpi4py: pip install 'tinygrad_nlp\[distributed\]'"):
        distributed.init()


def test_one_process_needs_no_mpi(monkeypatch):
    from tinygrad_nlp import distributed
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "mpi4py", raising=False)
    comm = distributed.init()
    assert type(comm) is Communicator and comm.world_size == 1 and distributed.current().world_size == 1
