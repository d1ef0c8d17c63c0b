import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ShapeError, Tensor


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1, 1, 1), (1, 7)])
def test_layer_norm_gradients(shape, rng):
    x, w, b = tensor(rng, *shape), tensor(rng, shape[-1]), tensor(rng, shape[-1])
    check_both_modes(F.layer_norm, [x, w, b])


def test_layer_norm_forward(rng):
    x, w, b = tensor(rng, 4, 6), tensor(rng, 6), tensor(rng, 6)
    xn = x.numpy()
    expected = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5) * w.numpy() + b.numpy()
    assert_close(F.layer_norm(x, w, b), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_rows_and_huge_values_stay_finite(dtype):
    x = Tensor(np.array([[3.0, 3.0, 3.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], dtype=dtype), requires_grad=True)
    w, b = Tensor(np.ones(3, dtype=dtype), requires_grad=True), Tensor(np.zeros(3, dtype=dtype), requires_grad=True)
    y = F.layer_norm(x, w, b)
    y.backward(np.ones_like(y.data))
    for a in (y.data, x.grad, w.grad, b.grad):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(y.data[0], 0)


def test_width_mismatch():
    with pytest.raises(ShapeError, match=r"width 4.*\(3,\)"):
        F.layer_norm(Tensor(np.zeros((2, 4))), Tensor(np.ones(3)), Tensor(np.zeros(3)))


@given(rows=st.integers(1, 4), width=st.integers(1, 9), seed=st.integers(0, 999))
def test_layer_norm_property(rows, width, seed):
    rng = np.random.default_rng(seed)
    x = tensor(rng, rows, width, scale=10)
    y = F.layer_norm(x, Tensor(np.ones(width)), Tensor(np.zeros(width)))
    if width > 1:
        np.testing.assert_allclose(y.numpy().mean(-1), 0, atol=1e-10)
    y.backward(rng.standard_normal(y.shape))
    np.testing.assert_allclose(x.grad.sum(-1), 0, atol=1e-9)  # shifting a row changes nothing


@needs_torch
def test_against_torch(rng):
    x, w, b = tensor(rng, 2, 3, 8), tensor(rng, 8), tensor(rng, 8)
    tx, tw, tb = map(to_torch, (x, w, b))
    out, tout = F.layer_norm(x, w, b), torch.nn.functional.layer_norm(tx, (8,), tw, tb, eps=1e-5)
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for a, t in [(x, tx), (w, tw), (b, tb)]:
        assert_close(a.grad, t.grad, rtol=1e-8)
