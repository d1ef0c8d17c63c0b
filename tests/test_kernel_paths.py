"""The ops' fused-kernel paths run on the CPU, with NumPy stand-ins for the element-wise
CUDA kernels (tests/kernel_standins.py): what each path does around its kernel gives what
the generic path gives. On a GPU the gpu tests run the kernels themselves."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import check_both_modes, philox_keep_mask
from tests.kernel_standins import kernels_on_the_cpu
from tinygrad_nlp import Tensor, backend, manual_seed
from tinygrad_nlp.models import MaskedLanguageModel
from tinygrad_nlp.ops import attention
from tinygrad_nlp.optim import create_optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_draws_its_mask_from_its_philox_stream_and_draws_it_again_backward(dtype, monkeypatch):
    kernels_on_the_cpu(monkeypatch, {"dropout"})
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((5, 7, 9)).astype(dtype), requires_grad=True)
    manual_seed(3)
    y = F.dropout(x, 0.3)
    assert "keep" not in y.creator.saved_arrays()  # no mask kept: key and counter only
    keep = philox_keep_mask(x.size, 0.3, *y.creator.stream).reshape(x.shape)
    np.testing.assert_array_equal(y.numpy(), np.where(keep, x.numpy() * dtype(1 / 0.7), 0))
    g = rng.standard_normal(x.shape).astype(dtype)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, np.where(keep, g * dtype(1 / 0.7), 0))
    second = F.dropout(x, 0.3)
    assert second.creator.stream[2] == y.creator.stream[2] + -(-x.size // 4)  # fresh counters
    manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.3).numpy(), y.numpy())  # the seed gives the same draws


def test_attention_with_the_kernels_dropout_matches_the_generic_path_with_the_same_mask(monkeypatch):
    def reference_mask(xp, shape, p):
        n = int(np.prod(shape))
        return philox_keep_mask(n, p, *backend.philox_stream(n)).reshape(shape)

    rng = np.random.default_rng(0)
    qkv, g = rng.standard_normal((3, 7, 3 * 16)), rng.standard_normal((3, 7, 16))
    mask = np.arange(7)[None] < np.array([[7], [4], [1]])
    results = []
    for fused in (False, True):
        if fused:
            kernels_on_the_cpu(monkeypatch, {"dropout"})
        monkeypatch.setattr(attention, "keep_mask", reference_mask)
        manual_seed(5)
        x = Tensor(qkv, requires_grad=True)
        out = F.self_attention(x, 4, mask=mask, dropout_p=0.25)
        assert ("keep" in out.creator.saved_arrays()) is not fused
        out.backward(g)
        results.append([out.numpy(), x.grad])
    for generic, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-14)


def test_attention_redraws_each_batch_blocks_mask_from_its_own_stream(monkeypatch):
    """One example per batch block, each block's mask from a stream of its own: float64
    finite differences of the forward (reseeded each time, so every run draws the same
    masks) agree with a backward that draws each block's mask again."""
    kernels_on_the_cpu(monkeypatch, {"dropout"})
    monkeypatch.setattr(attention, "rows_per_block", lambda xp, n_rows, row_bytes, block_bytes=None: 1)
    rng = np.random.default_rng(1)
    qkv = Tensor(rng.standard_normal((3, 5, 3 * 4)), requires_grad=True)
    mask = np.arange(5)[None] < np.array([[5], [3], [1]])

    def attend(x):
        manual_seed(11)
        return F.self_attention(x, 2, mask=mask, dropout_p=0.4)
    assert sorted(attend(qkv).creator.streams) == [0, 1, 2]
    check_both_modes(attend, [qkv])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_the_adam_kernel_path_over_the_flat_buffer_matches_the_generic_update(optimizer, weight_decay, dtype,
                                                                              monkeypatch):
    """Five steps with every gradient, then five with one parameter left without one
    (the others then go one by one): the arguments adam.cu gets, in its order."""
    results = []
    for fused in (False, True):
        if fused:
            kernels_on_the_cpu(monkeypatch, {"adam"})
        manual_seed(0)
        model = MaskedLanguageModel(50, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=dtype)
        opt = create_optimizer(optimizer, model.parameters(), lr=1e-2, weight_decay=weight_decay)
        rng = np.random.default_rng(0)
        for step in range(10):
            for i, p in enumerate(model.parameters()):
                grad = rng.standard_normal(p.shape).astype(dtype)
                p.grad = None if step >= 5 and i == 0 else grad
            opt.step()
        results.append([p.data.copy() for p in model.parameters()]
                       + [v.copy() for s in opt.state for k, v in sorted(s.items()) if k != "decayed_grad"])
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for generic, with_kernel in zip(*results, strict=True):
        np.testing.assert_allclose(with_kernel, generic, **tol)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_the_bias_activation_kernel_path_matches_the_generic_linear(activation, monkeypatch):
    """The saved z the backward kernel overwrites on the last backward (after one that
    keeps the graph), the bias it is given, how the results are used."""
    rng = np.random.default_rng(0)
    arrays = rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    upstream = rng.standard_normal((2, 5, 4))
    results = []
    for fused in (False, True):
        if fused:
            kernels_on_the_cpu(monkeypatch, {"bias_activation"})
        inputs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        y = F.linear(*inputs, activation=activation)
        assert y.creator.fused is fused
        y.backward(upstream, retain_graph=True)
        y.backward(upstream)
        results.append([y.numpy()] + [t.grad for t in inputs])
    for generic, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-14)
