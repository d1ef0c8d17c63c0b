"""Every op on CuPy against the same op on NumPy (skipped without a GPU)."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor, manual_seed

pytestmark = pytest.mark.gpu

CONSTANTS = {
    "ids": np.array([[1, 2, 1], [0, 4, 4]]),
    "targets": np.array([1, -100, 3, 0, 4, 4]),
    "mask": np.array([[True, True, False], [False, False, False]]),
    "rows": np.array([0, 0, 2]),
}

CASES = {
    "add": (lambda c, a, b: F.add(a, b), [(2, 3), (3,)]),
    "sub": (lambda c, a, b: F.sub(a, b), [(2, 3), (2, 1)]),
    "mul": (lambda c, a, b: F.mul(a, b), [(2, 3), (2, 3)]),
    "div": (lambda c, a, b: F.div(a, b + 3.0), [(2, 3), (3,)]),
    "pow": (lambda c, a: F.pow(a * a + 1.0, 1.5), [(2, 3)]),
    "exp_log": (lambda c, a: F.log(F.exp(a) + 1.0), [(2, 3)]),
    "relu_gelu_tanh": (lambda c, a: F.relu(a) + F.gelu(a) * F.tanh(a), [(4, 5)]),
    "shape": (lambda c, a: F.concatenate([F.permute(a, (1, 0, 2)).reshape(3, 8), a[1, :, 1:3]], axis=1).sum(axis=0), [(2, 3, 4)]),
    "getitem_int": (lambda c, a: a[c["rows"]].mean(axis=1, keepdims=True), [(3, 4)]),
    "matmul": (lambda c, a, b: F.matmul(a, b), [(2, 3, 4), (4, 5)]),
    "linear": (lambda c, x, w, b: F.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
    "embedding": (lambda c, w: F.embedding(c["ids"], w), [(5, 3)]),
    "softmax": (lambda c, x: F.softmax(x) * F.log_softmax(x, axis=0), [(6, 5)]),
    "cross_entropy": (lambda c, x: F.cross_entropy(x, c["targets"]), [(6, 5)]),
    "linear_cross_entropy": (lambda c, x, w, b: F.linear_cross_entropy(x, w, c["targets"], bias=b),
                             [(6, 4), (5, 4), (5,)]),
    "layer_norm": (lambda c, x, w, b: F.layer_norm(x, w, b), [(2, 3, 8), (8,), (8,)]),
    "self_attention": (lambda c, x: F.self_attention(x, 2, mask=c["mask"]), [(2, 3, 12)]),
    "attention": (lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, mask=c["mask"]), [(2, 2, 3, 4)] * 3),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy(name, dtype):
    import cupy
    fn, shapes = CASES[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    cpu = [Tensor(a, requires_grad=True) for a in arrays]
    gpu = [Tensor(cupy.asarray(a), requires_grad=True) for a in arrays]
    out_cpu = fn(CONSTANTS, *cpu)
    out_gpu = fn({k: cupy.asarray(v) for k, v in CONSTANTS.items()}, *gpu)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out_gpu.numpy(), out_cpu.numpy(), **tol)
    g = rng.standard_normal(out_cpu.shape).astype(dtype)
    out_cpu.backward(g)
    out_gpu.backward(cupy.asarray(g))
    for c, d in zip(cpu, gpu):
        assert d.grad is not None and isinstance(d.grad, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(d.grad), c.grad, **tol)


def test_dropout_on_gpu():
    import cupy
    manual_seed(0)
    x = Tensor(cupy.ones(1_000_000, dtype=cupy.float32), requires_grad=True)
    y = F.dropout(x, 0.25)
    dropped = cupy.asnumpy(y.data) == 0
    assert abs(dropped.mean() - 0.25) < 0.01
    y.backward(cupy.ones_like(y.data))
    np.testing.assert_array_equal(cupy.asnumpy(x.grad) == 0, dropped)


def test_tensor_moves_between_devices():
    x = Tensor(np.arange(4.0))
    y = x.to("cuda")
    assert y.device == "cuda" and y.to("cpu").device == "cpu"
    np.testing.assert_array_equal(y.numpy(), x.numpy())
