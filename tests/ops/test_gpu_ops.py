"""Every op of the shared case table on CuPy against the same op on NumPy, and with every
CUDA kernel on against the textbook ops on CuPy, in float32 and float64 (skipped without
a GPU)."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import assert_kernel_matches_generic, cuda_leaves, philox_keep_mask
from tinygrad_nlp import Tensor, backend, manual_seed, reference_ops
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case.same_on_every_device))
def test_every_cuda_kernel_equals_the_textbook_op(name, dtype, monkeypatch):
    """Each CUDA class registered in kernels/cuda (all switched on) against the op's own
    forward and backward on CuPy (``reference_ops``): values and gradients."""
    monkeypatch.setattr(backend.kernels, "fused_kernels", set(backend.FUSED_KERNEL_NAMES))
    case, results = CASES[name], []
    for reference in (True, False):
        inputs, constants = small_inputs(name, dtype, "cuda")
        with reference_ops(reference):
            out = case.ours(constants, *inputs)
        out.backward(backend.to_device(np.random.default_rng(1).standard_normal(out.shape).astype(dtype), "cuda"))
        results.append([out.numpy()] + [backend.asnumpy(t.grad) for t in inputs])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for textbook, fast in zip(*results, strict=True):
        np.testing.assert_allclose(fast, textbook, **tol)


def test_dropout_on_gpu():
    manual_seed(0)
    x = Tensor(np.ones(1_000_000, dtype=np.float32)).to("cuda")
    x.requires_grad = True
    y = F.dropout(x, 0.25)
    dropped = y.numpy() == 0
    assert abs(dropped.mean() - 0.25) < 0.01
    y.backward(backend.to_device(np.ones(y.shape, np.float32), "cuda"))
    np.testing.assert_array_equal(backend.asnumpy(x.grad) == 0, dropped)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (5, 3), (7, 129), (3, 1000, 37)])
def test_fused_dropout_kernel_draws_the_reference_mask_and_draws_it_again_in_the_backward(shape, dtype, monkeypatch):
    """kernels/cuda/dropout.cu: the kept elements are exactly those of the NumPy Philox reference
    (tests/helpers.py), scaled by 1/(1-p); the backward draws the same mask (sizes not a
    multiple of four, one and several launches' worth)."""
    monkeypatch.setattr(backend.kernels, "fused_kernels", {"dropout"})
    manual_seed(3)
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal(shape).astype(dtype) + 10, rng.standard_normal(shape).astype(dtype)
    p, scale = 0.3, dtype(1 / 0.7)
    for draw in range(2):  # a second call is the run's next draw: new numbers
        xt = Tensor(x).to("cuda")
        xt.requires_grad = True
        y = F.dropout(xt, p)
        assert y.creator.saved_arrays() == {}  # no mask kept
        y.backward(backend.to_device(g, "cuda"))
        drawn = y.creator.keep  # where the draw stands in the generator
        assert (drawn.draw, drawn.first) == (draw, 0)
        keep = philox_keep_mask(x.size, p, drawn.key0, drawn.key1, drawn.draw, drawn.first).reshape(shape)
        np.testing.assert_array_equal(y.numpy(), np.where(keep, x * scale, 0))
        np.testing.assert_array_equal(backend.asnumpy(xt.grad), np.where(keep, g * scale, 0))


def test_the_textbook_dropout_on_the_gpu_draws_the_cpus_mask():
    """With the dropout kernel off, a mask is drawn on the host and copied: the CPU's, so
    a GPU run and a CPU run of one seed drop the same elements."""
    x = np.ones((6, 50), np.float32)
    manual_seed(2)
    on_cpu = F.dropout(Tensor(x), 0.3).numpy()
    manual_seed(2)
    np.testing.assert_array_equal(F.dropout(Tensor(x).to("cuda"), 0.3).numpy(), on_cpu)


def test_fused_dropout_is_seeded_drops_at_rate_p_and_takes_any_layout(monkeypatch):
    monkeypatch.setattr(backend.kernels, "fused_kernels", {"dropout"})
    x = backend.to_device(np.ones((400, 2500), dtype=np.float32), "cuda")
    draws = []
    for _ in range(2):
        manual_seed(11)
        draws.append(F.dropout(Tensor(x), 0.1).numpy())
    np.testing.assert_array_equal(draws[0], draws[1])
    assert abs((draws[0] == 0).mean() - 0.1) < 0.003
    manual_seed(11)
    transposed = F.dropout(Tensor(x.T), 0.1).numpy()  # not contiguous: copied first
    np.testing.assert_array_equal(transposed, draws[0].reshape(2500, 400))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_with_the_fused_dropout_kernel_matches_the_textbook_op_with_the_same_mask(dtype, monkeypatch):
    """Attention's dropout on the probabilities through kernels/cuda/dropout.cu (mask not
    saved, drawn again in the backward) against the textbook op given the Philox mask itself."""
    import tinygrad_nlp.ops.attention as attention_op

    def reference_mask(xp, shape, p):
        key0, key1, draw, first = backend.philox_place(int(np.prod(shape[1:])))
        keep = philox_keep_mask(int(np.prod(shape)), p, key0, key1, draw, first)
        return backend.to_device(keep.reshape(shape), "cuda")

    rng = np.random.default_rng(0)
    qkv, g = rng.standard_normal((3, 7, 3 * 16)).astype(dtype), rng.standard_normal((3, 7, 16)).astype(dtype)
    mask = backend.to_device(np.arange(7)[None] < np.array([[7], [4], [1]]), "cuda")

    def run(fused):
        monkeypatch.setattr(attention_op, "keep_mask", reference_mask)
        manual_seed(5)
        x, = cuda_leaves(qkv)
        out = F.self_attention(x, 4, mask=mask, dropout_p=0.25)
        if fused:
            assert "keep" not in out.creator.saved_arrays()
        out.backward(backend.to_device(g, "cuda"))
        return [out.data, x.grad]
    assert_kernel_matches_generic(monkeypatch, {"softmax", "dropout"}, run, dtype)


def test_tensor_moves_between_devices():
    x = Tensor(np.arange(4.0))
    y = x.to("cuda")
    assert y.device == "cuda" and y.to("cpu").device == "cpu"
    np.testing.assert_array_equal(y.numpy(), x.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 1), (4, 7, 33), (5, 128), (2, 3000)])
def test_fused_layer_norm_kernel_matches_the_generic_gpu_path(shape, dtype, monkeypatch):
    """kernels/cuda/layernorm.cu against the textbook op on CuPy: output and all three gradients
    (widths below, at and above one thread per column; several leading axes)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype) * 3 + 1
    w, b = rng.standard_normal(shape[-1:]).astype(dtype), rng.standard_normal(shape[-1:]).astype(dtype)
    g = backend.to_device(rng.standard_normal(shape).astype(dtype), "cuda")

    def run(fused):
        inputs = cuda_leaves(x, w, b)
        y = F.layer_norm(*inputs)
        y.backward(g)
        return [y.data] + [t.grad for t in inputs]
    assert_kernel_matches_generic(monkeypatch, "layer_norm", run, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("x_shape", [(7, 5), (2, 33, 64), (300, 128)])
def test_fused_bias_activation_kernel_matches_the_generic_gpu_path(x_shape, activation, dtype, monkeypatch):
    """kernels/cuda/bias_activation.cu against the textbook op on CuPy: linear(..., activation=)'s
    output and the gradients of x, W and b, on the last backward (the kernel writes dL/dz
    over the saved z) and on one that keeps the graph (a second backward accumulates)."""
    rng = np.random.default_rng(0)
    out_features = 2 * x_shape[-1] + 3
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((out_features, x_shape[-1])) / np.sqrt(x_shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype)
    g = backend.to_device(rng.standard_normal(x_shape[:-1] + (out_features,)).astype(dtype), "cuda")

    def run(fused):
        inputs = cuda_leaves(x, w, b)
        y = F.linear(*inputs, activation=activation)
        assert ("pre_activation" in y.creator.saved_names) is fused
        y.backward(g, retain_graph=True)
        y.backward(g)
        return [y.data] + [t.grad for t in inputs]
    assert_kernel_matches_generic(monkeypatch, "bias_activation", run, dtype)


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
    """kernels/cuda/softmax.cu against the textbook ops on CuPy: softmax, log-softmax,
    cross-entropy with ignored targets and masked self-attention with fully masked
    query rows — values and gradients, widths below, near and above one thread per column."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, width)) * 4).astype(dtype)
    targets = rng.integers(0, width, 10)
    targets[[1, 7]] = -100
    mask = np.ones((2, 5), dtype=bool)
    mask[1, :] = False  # every query of example 1 attends to nothing: its rows are all -inf

    def run(fused):
        inputs, = cuda_leaves(x)
        loss = _softmax_family(inputs, backend.to_device(targets, "cuda"), backend.to_device(mask, "cuda"))
        loss.backward()
        return [loss.data, inputs.grad]
    assert_kernel_matches_generic(monkeypatch, "softmax", run, dtype)
