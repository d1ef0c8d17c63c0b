import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ArgumentError, ShapeError, Tensor


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3)),
                                    ((3, 4), (4,)), ((2, 3, 3, 5), (2, 3, 5, 3))])
def test_matmul(shapes, rng):
    a, b = tensor(rng, *shapes[0]), tensor(rng, *shapes[1])
    check_both_modes(F.matmul, [a, b])
    assert_close(a @ b, a.numpy() @ b.numpy())


@pytest.mark.parametrize("x_shape", [(5, 3), (2, 4, 3), (1, 1, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape, bias, rng):
    x, w = tensor(rng, *x_shape), tensor(rng, 4, 3)
    inputs = [x, w] + ([tensor(rng, 4)] if bias else [])
    check_both_modes(F.linear, inputs)
    expected = x.numpy() @ w.numpy().T + (inputs[2].numpy() if bias else 0)
    assert_close(F.linear(*inputs), expected)


@pytest.mark.parametrize("activation, separate", [("relu", F.relu), ("gelu", F.gelu),
                                                  ("gelu_tanh", lambda y: F.gelu(y, approximate="tanh")),
                                                  ("silu", F.silu)])
def test_linear_with_an_activation_is_the_two_ops_in_one_node(activation, separate, rng):
    x, w, b = tensor(rng, 2, 5, 3), tensor(rng, 4, 3), tensor(rng, 4)
    fused = F.linear(x, w, b, activation=activation)
    assert fused.creator.parents == (x, w, b)  # one node, straight to the leaves
    two_ops = separate(F.linear(x, w, b))
    np.testing.assert_array_equal(fused.numpy(), two_ops.numpy())
    upstream = rng.standard_normal(fused.shape)
    fused.backward(upstream)
    grads = [t.grad.copy() for t in (x, w, b)]
    x.grad = w.grad = b.grad = None
    two_ops.backward(upstream)
    for fused_grad, t in zip(grads, (x, w, b)):
        np.testing.assert_array_equal(fused_grad, t.grad)


def test_an_unknown_activation_is_refused_by_name():
    with pytest.raises(ArgumentError, match=r"linear: activation must be None or one of \['gelu', 'gelu_tanh', "
                                            r"'relu', 'silu'\], got 'swish'"):
        F.linear(Tensor(np.zeros((2, 3))), Tensor(np.zeros((4, 3))), activation="swish")


def test_shape_errors_name_both_shapes():
    with pytest.raises(ShapeError, match=r"linear.*\(2, 5\).*\(4, 3\)"):
        F.linear(Tensor(np.zeros((2, 5))), Tensor(np.zeros((4, 3))))
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 5\).*\(4, 3\)"):
        F.matmul(Tensor(np.zeros((2, 5))), Tensor(np.zeros((4, 3))))
    with pytest.raises(ShapeError, match=r"bias"):
        F.linear(Tensor(np.zeros((2, 3))), Tensor(np.zeros((4, 3))), Tensor(np.zeros(3)))


@given(n=st.integers(1, 4), i=st.integers(1, 7), o=st.integers(1, 7), seed=st.integers(0, 1000))
def test_linear_property(n, i, o, seed):
    rng = np.random.default_rng(seed)
    x, w, b = tensor(rng, n, i), tensor(rng, o, i), tensor(rng, o)
    y = F.linear(x, w, b)
    assert y.shape == (n, o)
    y.sum().backward()
    np.testing.assert_allclose(b.grad, np.full(o, n))
    np.testing.assert_allclose(w.grad, np.tile(x.data.sum(0), (o, 1)))


@needs_torch
def test_against_torch(rng):
    x, w, b = tensor(rng, 2, 3, 4), tensor(rng, 5, 4), tensor(rng, 5)
    m = tensor(rng, 2, 5, 3)
    tx, tw, tb, tm = map(to_torch, (x, w, b, m))
    out = F.matmul(F.linear(x, w, b), m)
    tout = torch.nn.functional.linear(tx, tw, tb) @ tm
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for a, t in [(x, tx), (w, tw), (b, tb), (m, tm)]:
        assert_close(a.grad, t.grad)
