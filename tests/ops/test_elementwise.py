import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ArgumentError, ShapeError, Tensor, backend
from tinygrad_nlp.ops.activations import ACTIVATIONS

BINARY = {"add": F.add, "sub": F.sub, "mul": F.mul, "div": F.div}
UNARY = {"neg": F.neg, "exp": F.exp, "relu": F.relu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "tanh": F.tanh}
BROADCAST_PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((1,), (2, 3)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
def test_binary_gradients_with_broadcasting(name, shapes, rng):
    a = tensor(rng, *shapes[0])
    b = Tensor(rng.uniform(0.5, 2.0, shapes[1]) * rng.choice([-1, 1], shapes[1]), requires_grad=True)
    check_both_modes(BINARY[name], [a, b])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradients(name, rng):
    x = tensor(rng, 3, 5)
    x.data[np.abs(x.data) < 1e-3] = 0.5  # keep relu away from its kink
    check_both_modes(UNARY[name], [x])


def test_log_and_pow_gradients(rng):
    x = Tensor(rng.uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    y = tensor(rng, 3, 4)
    check_both_modes(F.log, [x])
    check_both_modes(F.pow, [x, y])
    check_both_modes(lambda x: x ** 3, [x])


def test_operators_match_functions(rng):
    a, b = tensor(rng, 2, 3), tensor(rng, 2, 3)
    for op, fn in [(a + b, F.add), (a - b, F.sub), (a * b, F.mul), (a / b, F.div)]:
        assert_close(op, fn(a, b))
    assert_close(-a, F.neg(a))
    assert_close(2.0 - a, 2.0 - a.numpy())
    assert_close(1.0 / b, 1.0 / b.numpy())
    assert_close(a ** 2, a.numpy() ** 2)
    assert_close(a @ b.T, a.numpy() @ b.numpy().T)


def test_scalar_keeps_dtype():
    x = Tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.5).dtype == np.float32 and (1 - x).dtype == np.float32


def test_broadcast_failure_names_both_shapes():
    with pytest.raises(ShapeError, match=r"Add.*\(2, 3\).*\(4,\)"):
        F.add(Tensor(np.zeros((2, 3))), Tensor(np.zeros(4)))


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_broadcast_gradient_shapes_property(shape, seed):
    rng = np.random.default_rng(seed)
    reduced = [1 if rng.random() < 0.5 else n for n in shape][rng.integers(0, len(shape)):]
    a, b = tensor(rng, *shape), tensor(rng, *reduced)
    (a * b + a).sum().backward()
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    np.testing.assert_allclose(b.grad.sum(), (a.data * np.ones(np.broadcast_shapes(a.shape, b.shape))).sum())


@needs_torch
@pytest.mark.parametrize("name", sorted(BINARY) + sorted(UNARY) + ["log", "pow"])
def test_against_torch(name, rng):
    a = Tensor(rng.uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    b = tensor(rng, 4)
    fn = {**BINARY, **UNARY, "log": F.log, "pow": F.pow}[name]
    torch_fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "neg": torch.neg,
                "exp": torch.exp, "relu": torch.relu, "tanh": torch.tanh, "log": torch.log, "pow": torch.pow,
                "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh")}[name]
    args = [a, b] if name in BINARY or name == "pow" else [a]
    targs = [to_torch(t) for t in args]
    out, tout = fn(*args), torch_fn(*targs)
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for t, tt in zip(args, targs):
        assert_close(t.grad, tt.grad)


def test_exact_gelu_matches_math_erf_and_differs_from_tanh_form():
    x = np.linspace(-6, 6, 101)
    expected = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    exact = F.gelu(Tensor(x), approximate="none").numpy()
    np.testing.assert_allclose(exact, expected, rtol=1e-14, atol=1e-15)
    assert np.abs(F.gelu(Tensor(x), approximate="tanh").numpy() - expected).max() > 1e-4
    np.testing.assert_array_equal(F.gelu(Tensor(x)).numpy(), exact)  # the default is the exact form, as PyTorch's
    with pytest.raises(ArgumentError, match="approximate must be 'tanh' or 'none', got 'erf'"):
        F.gelu(Tensor(x), approximate="erf")


def test_exact_gelu_in_float32_is_as_close_to_exact_as_pytorchs_and_keeps_one_array():
    x64 = np.random.default_rng(0).standard_normal((64, 300)) * 3
    x32 = x64.astype(np.float32)
    exact = np.vectorize(lambda v: v * 0.5 * math.erfc(-v / math.sqrt(2)))(x32.astype(np.float64))
    slope = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi))
    t = Tensor(x32, requires_grad=True)
    y = F.gelu(t)
    assert y.creator.saved_names == ("gelu_slope",) and y.data.dtype == np.float32
    y.backward(np.ones_like(x32))
    assert np.abs(y.numpy() - exact).max() <= 1e-6 and np.abs(t.grad - slope(x32.astype(np.float64))).max() <= 1e-6
    assert ACTIVATIONS["gelu"].forward(x32, False)[1] == ()  # with no backward to come, nothing is made to keep
    node = F.linear(Tensor(x32, requires_grad=True), np.eye(300, dtype=np.float32), activation="gelu").creator
    assert "gelu_slope" in node.saved_names and "gelu_input" not in node.saved_names


def test_erf_without_scipy_is_the_c_library_erf(monkeypatch):
    x = np.linspace(-4, 4, 33).astype(np.float32)
    with_scipy = backend.erf(x)
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import fails
    without = backend.erf(x)
    assert without.dtype == np.float32
    np.testing.assert_allclose(without, with_scipy, rtol=1e-6, atol=1e-7)


@needs_torch
@pytest.mark.parametrize("fused", [False, True])
def test_relu_at_nan_passes_the_gradient_as_pytorch(fused):
    """relu(NaN) is NaN and its gradient the upstream one (PyTorch's threshold_backward: zero
    only where x <= 0), alone and inside linear(..., activation="relu")."""
    x = np.array([-1.0, 0.0, np.nan, 2.0])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    ours = Tensor(x, requires_grad=True)
    if fused:
        out = F.linear(ours[:, None], Tensor(np.ones((1, 1))), activation="relu")[:, 0]
    else:
        out = F.relu(ours)
    out.backward(g)
    theirs = torch.tensor(x, requires_grad=True)
    torch.relu(theirs).backward(torch.tensor(g))
    np.testing.assert_array_equal(out.numpy(), torch.relu(torch.tensor(x)).numpy())
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())
