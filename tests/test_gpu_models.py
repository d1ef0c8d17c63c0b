"""The CuPy backend end to end: both models, training, checkpoints across devices and the
example scripts with --device cuda (skipped without a GPU)."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import assert_kernel_matches_generic
from tinygrad_nlp import backend, checkpoint, manual_seed
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier
from tinygrad_nlp.optim import Adam

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models(dtype):
    manual_seed(0)
    mlm = MaskedLanguageModel(50, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=dtype)
    classifier = TextClassifier(50, 2, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=dtype)
    return mlm, classifier


def loss_of(model, device, ids, targets, mask, labels):
    xp = backend.xp_for(device)
    if isinstance(model, MaskedLanguageModel):
        return model.loss(xp.asarray(ids), xp.asarray(targets))
    return F.cross_entropy(model(xp.asarray(ids), xp.asarray(mask)), xp.asarray(labels))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [0, 1])
def test_model_losses_and_gradients_match_cpu(which, dtype):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (4, 12))
    targets = np.where(rng.random((4, 12)) < 0.3, ids, -100)
    mask = np.arange(12)[None] < np.array([[12], [7], [3], [1]])
    labels = rng.integers(0, 2, 4)
    cpu = models(dtype)[which]
    gpu = copy.deepcopy(cpu).to("cuda")
    losses = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        loss = loss_of(model, device, ids, targets, mask, labels)
        loss.backward()
        losses.append(loss.item())
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(losses[1], losses[0], **tol)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        np.testing.assert_allclose(backend.asnumpy(q.grad), p.grad, **tol, err_msg=name)


def test_mlm_training_reaches_the_cpu_loss_and_checkpoints_move():
    """300 Adam steps without dropout: the GPU's loss curve follows the CPU's; the GPU
    model saved and loaded on the CPU (and back) keeps its weights."""
    rng = np.random.default_rng(1)
    data = [rng.integers(0, 50, (16, 12)) for _ in range(300)]
    finals = {}
    for device in ("cpu", "cuda"):
        model = models(np.float32)[0].to(device)
        opt = Adam(model.parameters(), lr=3e-3)
        xp = backend.xp_for(device)
        losses = []
        for ids in data:
            targets = np.where(ids % 3 == 0, ids, -100)
            opt.zero_grad()
            loss = model.loss(xp.asarray(ids), xp.asarray(targets))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        finals[device] = (np.mean(losses[-20:]), model)
    assert abs(finals["cuda"][0] - finals["cpu"][0]) < 0.05 * finals["cpu"][0]
    gpu_model = finals["cuda"][1]
    path = os.path.join(ROOT, ".pytest_gpu_ckpt.npz")
    try:
        checkpoint.save(path, gpu_model)
        on_cpu = checkpoint.load_model(path, "cpu")
        back_on_gpu = checkpoint.load_model(path, "cuda")
    finally:
        if os.path.exists(path):
            os.unlink(path)
    for p, q, r in zip(gpu_model.parameters(), on_cpu.parameters(), back_on_gpu.parameters()):
        np.testing.assert_array_equal(backend.asnumpy(p.data), q.data)
        assert backend.device_of(r.data) == "cuda"
        np.testing.assert_array_equal(backend.asnumpy(r.data), q.data)


@pytest.mark.parametrize("script,args", [
    ("mlm.py", ["--steps", "20", "--batch-size", "16", "--n-layers", "1", "--builtin-sentences", "500",
                "--eval-every", "10"]),
    ("classify.py", ["--epochs", "1", "--train-per-class", "40", "--test-per-class", "10", "--plot", "pca"]),
])
def test_example_scripts_run_on_cuda(script, args, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--device", "cuda",
                             "--no-progress", "--out", str(tmp_path), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_fused_adam_kernel_matches_the_generic_gpu_path(optimizer, weight_decay, dtype, monkeypatch):
    """adam.cu against the generic CuPy update: five steps over the flat buffer, then
    five with one parameter left without a gradient (each parameter updated alone)."""
    from tinygrad_nlp.optim import create_optimizer

    def run(fused):
        mlm = models(dtype)[0].to("cuda")
        opt = create_optimizer(optimizer, mlm.parameters(), lr=1e-2, weight_decay=weight_decay)
        rng = np.random.default_rng(0)
        for step in range(10):
            for i, p in enumerate(mlm.parameters()):
                grad = rng.standard_normal(p.shape).astype(dtype)
                p.grad = None if step >= 5 and i == 0 else backend.to_device(grad, "cuda")
            opt.step()
        return [p.data for p in mlm.parameters()] + \
            [v for s in opt.state for k, v in sorted(s.items()) if k != "decayed_grad"]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert_kernel_matches_generic(monkeypatch, "adam", run, dtype, tol)
