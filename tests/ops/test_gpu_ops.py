"""Every op of the shared case table on CuPy against the same op on NumPy, in float32 and
float64 (skipped without a GPU)."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor, backend, manual_seed
from tinygrad_nlp.testing import CASES, small_inputs

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case.same_on_every_device))
def test_op_matches_numpy(name, dtype):
    case = CASES[name]
    cpu, cpu_constants = small_inputs(name, dtype, "cpu")
    gpu, gpu_constants = small_inputs(name, dtype, "cuda")
    out_cpu, out_gpu = case.ours(cpu_constants, *cpu), case.ours(gpu_constants, *gpu)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out_gpu.numpy(), out_cpu.numpy(), **tol)
    g = np.random.default_rng(1).standard_normal(out_cpu.shape).astype(dtype)
    out_cpu.backward(g)
    out_gpu.backward(backend.to_device(g, "cuda"))
    for c, d in zip(cpu, gpu):
        assert d.grad is not None and d.device == "cuda"
        np.testing.assert_allclose(backend.asnumpy(d.grad), c.grad, **tol)


def test_dropout_on_gpu():
    manual_seed(0)
    x = Tensor(np.ones(1_000_000, dtype=np.float32)).to("cuda")
    x.requires_grad = True
    y = F.dropout(x, 0.25)
    dropped = y.numpy() == 0
    assert abs(dropped.mean() - 0.25) < 0.01
    y.backward(backend.to_device(np.ones(y.shape, np.float32), "cuda"))
    np.testing.assert_array_equal(backend.asnumpy(x.grad) == 0, dropped)


def test_tensor_moves_between_devices():
    x = Tensor(np.arange(4.0))
    y = x.to("cuda")
    assert y.device == "cuda" and y.to("cpu").device == "cpu"
    np.testing.assert_array_equal(y.numpy(), x.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 1), (4, 7, 33), (5, 128), (2, 3000)])
def test_fused_layer_norm_kernel_matches_the_generic_gpu_path(shape, dtype, monkeypatch):
    """ops/layernorm.cu against CuPy's generic array code: output and all three gradients
    (widths below, at and above one thread per column; several leading axes)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype) * 3 + 1
    w, b = rng.standard_normal(shape[-1:]).astype(dtype), rng.standard_normal(shape[-1:]).astype(dtype)
    g = backend.to_device(rng.standard_normal(shape).astype(dtype), "cuda")
    results = {}
    for fused in (False, True):
        monkeypatch.setattr(backend, "fused_kernels", {"layer_norm"} if fused else set())
        inputs = [Tensor(a).to("cuda") for a in (x, w, b)]
        for t in inputs:
            t.requires_grad = True
        y = F.layer_norm(*inputs)
        y.backward(g)
        results[fused] = [y.numpy()] + [backend.asnumpy(t.grad) for t in inputs]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for generic, kernel in zip(results[False], results[True]):
        np.testing.assert_allclose(kernel, generic, **tol)


def _softmax_family(x, targets, mask):
    """Every op whose forward or backward goes through exp_rows / softmax_backward: a
    scalar from each, summed, so one backward checks all their gradients."""
    b, t, h, d = 2, x.shape[1], 2, x.shape[2] // 6
    qkv = x.reshape(b, t, 3 * h * d)
    attention = F.self_attention(qkv, h, mask=mask)
    return (F.softmax(x, axis=-1) * x).sum() + F.log_softmax(x, axis=1).mean() \
        + F.cross_entropy(x.reshape(-1, x.shape[-1]), targets) + (attention * attention).sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [12, 60, 1200])
def test_fused_softmax_kernel_matches_the_generic_gpu_path(width, dtype, monkeypatch):
    """ops/softmax.cu against CuPy's generic array code: softmax, log-softmax,
    cross-entropy with ignored targets and masked self-attention with fully masked
    query rows — values and gradients, widths below, near and above one thread per column."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, width)) * 4).astype(dtype)
    targets = rng.integers(0, width, 10)
    targets[[1, 7]] = -100
    mask = np.ones((2, 5), dtype=bool)
    mask[1, :] = False  # every query of example 1 attends to nothing: its rows are all -inf
    results = {}
    for fused in (False, True):
        monkeypatch.setattr(backend, "fused_kernels", {"softmax"} if fused else set())
        inputs = Tensor(x, requires_grad=True).to("cuda")
        inputs.requires_grad = True
        loss = _softmax_family(inputs, backend.to_device(targets, "cuda"), backend.to_device(mask, "cuda"))
        loss.backward()
        results[fused] = [loss.numpy(), backend.asnumpy(inputs.grad)]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for generic, kernel in zip(results[False], results[True]):
        np.testing.assert_allclose(kernel, generic, **tol)
