"""The cases an outside operator suite found (issue: axis handling, pow at zero, integer
inputs): each gives PyTorch's answer or a documented error."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import needs_torch, torch
from tinygrad_nlp import ArgumentError, ShapeError, Tensor


@pytest.mark.parametrize("call", [lambda x: F.sum(x, axis=5), lambda x: F.mean(x, axis=-4),
                                  lambda x: F.sum(x, axis=(0, 3)), lambda x: F.permute(x, (2, 0, 4)),
                                  lambda x: F.transpose(x, (0, 1, -4)), lambda x: F.sum(x, axis=(1, -2))])
def test_out_of_range_or_repeated_axes_are_refused(call):
    with pytest.raises(ShapeError, match="axis|axes"):
        call(Tensor(np.zeros((2, 3, 4))))


def test_reductions_of_a_0d_tensor():
    x = Tensor(np.float32(2.0), requires_grad=True)
    for axis in (0, -1, None):
        y = F.sum(x, axis=axis)
        assert y.shape == () and y.item() == 2.0
    y.backward()
    assert x.grad == 1.0
    assert F.mean(Tensor(np.float32(2.0)), axis=0).item() == 2.0
    with pytest.raises(ShapeError, match="0-d"):
        F.sum(Tensor(np.float32(2.0)), axis=1)


def test_concatenate_axis_out_of_range_is_a_shape_error():
    with pytest.raises(ShapeError, match="axis 3"):
        F.concatenate([Tensor(np.zeros((2, 3, 4))), Tensor(np.zeros((2, 3, 4)))], axis=3)
    with pytest.raises(ShapeError):
        F.concatenate([Tensor(np.zeros((2, 3))), Tensor(np.zeros(3))], axis=0)
    with pytest.raises(ShapeError):
        F.concatenate([], axis=0)


def test_pow_gradients_at_zero():
    a = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([0.0, 0.0]), requires_grad=True)
    F.pow(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])  # d/dx x**0 = 0, also at x = 0 (PyTorch: 0)
    a = Tensor(np.array([0.0, 0.0, -1.0]), requires_grad=True)
    b = Tensor(np.array([-1.0, 2.0, 2.0]), requires_grad=True)
    with np.errstate(divide="ignore"):
        F.pow(a, b).sum().backward()
    np.testing.assert_array_equal(b.grad, [0.0, 0.0, 0.0])  # documented: 0 where a <= 0


@needs_torch
def test_pow_gradient_in_the_base_matches_pytorch_where_finite():
    a = np.array([0.0, 0.5, 2.0, 3.0])
    b = np.array([0.0, 2.0, 1.5, 0.0])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b)
    (ta ** tb).sum().backward()
    x = Tensor(a, requires_grad=True)
    F.pow(x, b).sum().backward()
    np.testing.assert_allclose(x.grad, ta.grad.numpy())


@needs_torch
def test_pow_gradient_in_the_exponent_matches_pytorch_where_it_is_finite_and_at_a_zero_base():
    a = np.array([0.0, 0.0, 0.5, 2.0, 3.0])
    b = np.array([2.0, 0.5, 2.0, 1.5, 0.0])  # 0 ** y for y > 0: PyTorch's d/dy is 0, as ours
    ta, tb = torch.tensor(a), torch.tensor(b, requires_grad=True)
    (ta ** tb).sum().backward()
    y = Tensor(b, requires_grad=True)
    F.pow(a, y).sum().backward()
    np.testing.assert_allclose(y.grad, tb.grad.numpy())


@needs_torch
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_and_log_softmax_of_a_0d_tensor_are_pytorchs(axis):
    for ours, theirs in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        x = Tensor(np.float64(3.0), requires_grad=True)
        y = ours(x, axis=axis)
        y.backward()
        tx = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        ty = theirs(tx, axis)
        ty.backward()
        assert y.shape == () and y.item() == ty.item() and x.grad == tx.grad.item()
    with pytest.raises(ShapeError, match="axis 1 is out of range"):
        F.softmax(Tensor(np.float64(3.0)), axis=1)


@pytest.mark.parametrize("op", [lambda a, b: a / b, lambda a, b: F.exp(a), lambda a, b: F.log(a + 1),
                                lambda a, b: F.tanh(a), lambda a, b: F.mean(a), lambda a, b: F.softmax(a),
                                lambda a, b: F.gelu(a)])
def test_integer_inputs_to_float_ops_give_float32(op):
    a, b = Tensor(np.array([1, 2, 3], dtype=np.int32)), Tensor(np.array([2, 2, 2], dtype=np.int32))
    assert op(a, b).dtype == np.float32
    assert op(a, Tensor(np.ones(3))).dtype in (np.float32, np.float64)


def test_integer_with_float64_gives_float64_and_integer_arithmetic_stays_integer():
    a = Tensor(np.array([1, 2, 3], dtype=np.int32))
    assert (a / Tensor(np.ones(3, dtype=np.float64))).dtype == np.float64
    assert (a + a).dtype == np.int32 and (a * 2).dtype == np.int32
    assert (a * 0.5).dtype == np.float32 and (a * 0.5).numpy().tolist() == [0.5, 1.0, 1.5]


def test_integer_to_negative_integer_power_is_an_argument_error():
    with pytest.raises(ArgumentError, match="negative integer powers"):
        F.pow(Tensor(np.array([2, 3])), Tensor(np.array([-1, 2])))


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_softmax_over_an_empty_axis_is_refused(op):
    """Documented in the README's Semantics (PyTorch returns the empty result)."""
    with pytest.raises(ShapeError, match="empty"):
        op(Tensor(np.zeros((3, 0))), axis=-1)


@needs_torch
def test_causal_attention_with_fewer_queries_takes_them_as_the_last_positions():
    """Documented in the README's Semantics: query i sees keys up to i + Tk - Tq (a decoding
    step after cached keys); PyTorch's is_causal aligns the triangle to the first keys."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 1, 2, 3)), rng.standard_normal((1, 1, 5, 3)), rng.standard_normal((1, 1, 5, 3))
    ours = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True).numpy()
    tq, tk, tv = (torch.tensor(a) for a in (q, k, v))
    last = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=torch.ones(2, 5, dtype=torch.bool).tril(diagonal=3)).numpy()
    first = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).numpy()
    np.testing.assert_allclose(ours, last, rtol=1e-12)
    assert not np.allclose(ours, first)
