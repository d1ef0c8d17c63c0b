"""SiLU (as an op and as ``linear``'s activation) and the SwiGLU gate silu(gate) * up."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tests.kernel_standins import kernels_on_the_cpu
from tinygrad_nlp import ShapeError, Tensor, reference_ops
from tinygrad_nlp.kernels.cuda.bias_activation import LinearBiasActivationKernel
from tinygrad_nlp.nn import FeedForward


def silu(x):
    return x / (1 + np.exp(-x))


def test_silu_gradients(rng):
    check_both_modes(F.silu, [tensor(rng, 3, 5, scale=3)])


def test_silu_forward_and_saves_its_slope_only(rng):
    x = tensor(rng, 4, 6, scale=3)
    y = F.silu(x)
    assert_close(y, silu(x.numpy()))
    assert list(y.creator.saved_arrays()) == ["silu_slope"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_and_swiglu_at_huge_inputs_are_exact_and_silent(dtype):
    x = Tensor(np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4], dtype=dtype), requires_grad=True)
    up = Tensor(np.ones(7, dtype=dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp
        y, z = F.silu(x), F.swiglu(x, up)
        y.backward(np.ones(7, dtype=dtype))
        z.backward(np.ones(7, dtype=dtype))
    expected = np.array([0.0, 0.0, -30 * np.exp(-30.0), 0.0, 30.0, 800.0, 1e4])
    for out in (y, z):
        assert out.dtype == dtype
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(x.grad / 2, [0, 0, 0, 0.5, 1, 1, 1], atol=1e-11)  # slope 0 far left, 1 far right
    np.testing.assert_allclose(up.grad, expected, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_with_silu_is_silu_of_linear_on_every_path(bias, rng):
    x, w = tensor(rng, 2, 3, 4), tensor(rng, 5, 4)
    b = tensor(rng, 5) if bias else None
    inputs = [x, w] + ([b] if bias else [])
    check_both_modes(lambda x, w, *b: F.linear(x, w, *b, activation="silu"), inputs)
    g = rng.standard_normal((2, 3, 5))
    results = []
    for reference in (False, True):
        with reference_ops(reference):
            for fused in (True, False):
                for t in inputs:
                    t.grad = None
                out = F.linear(x, w, b, activation="silu") if fused else F.silu(F.linear(x, w, b))
                out.backward(g)
                results.append([out.numpy()] + [t.grad for t in inputs])
    for other in results[1:]:
        for a, c in zip(results[0], other, strict=True):
            assert_close(a, c)


def test_the_cuda_bias_activation_kernel_refuses_silu_and_the_textbook_op_runs(rng, monkeypatch):
    """The kernel's .cu knows relu and the GELUs, not silu: the dispatch leaves silu to the
    textbook Linear (run here with the kernel switched on and NumPy stand-ins for CuPy)."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5, 4), (5,)))
    expected = silu(x.astype(np.float64) @ w.T + b)
    launched = kernels_on_the_cpu(monkeypatch, {"bias_activation"})
    out = F.linear(Tensor(x, requires_grad=True), Tensor(w), Tensor(b), activation="silu")
    assert type(out.creator) is not LinearBiasActivationKernel and not launched
    assert_close(out, expected, rtol=1e-5, atol=1e-6)
    gelu = F.linear(Tensor(x, requires_grad=True), Tensor(w), Tensor(b), activation="gelu")
    assert type(gelu.creator) is LinearBiasActivationKernel and launched["bias_activation"] == 1


def test_feed_forward_takes_silu(rng):
    ff = FeedForward(4, 8, activation="silu")
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    h = silu(x.numpy() @ ff.linear1.weight.numpy().T + ff.linear1.bias.numpy())
    assert_close(ff(x), h @ ff.linear2.weight.numpy().T + ff.linear2.bias.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1,)])
def test_swiglu_gradients(shape, rng):
    check_both_modes(F.swiglu, [tensor(rng, *shape, scale=3), tensor(rng, *shape)])


def test_swiglu_is_silu_times_up_and_saves_gate_and_up(rng):
    gate, up = tensor(rng, 2, 3, 4, scale=3), tensor(rng, 2, 3, 4)
    out = F.swiglu(gate, up)
    assert_close(out, silu(gate.numpy()) * up.numpy())
    assert list(out.creator.saved_arrays()) == ["gate", "up"]
    g = rng.standard_normal(out.shape)
    out.backward(g)
    grads = gate.grad, up.grad
    gate.grad = up.grad = None
    (F.silu(gate) * up).backward(g)  # two nodes: the same gradients
    assert_close(grads[0], gate.grad)
    assert_close(grads[1], up.grad)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), scale=st.sampled_from([0.1, 1.0, 20.0]),
       seed=st.integers(0, 999))
def test_swiglu_property(shape, scale, seed):
    """With up = 1 it is silu; its gate gradient at up = 1, g = 1 is silu's slope, which
    lies in [-0.1, 1.1] (its extremes are about -0.0998 and 1.0998)."""
    rng = np.random.default_rng(seed)
    gate = tensor(rng, *shape, scale=scale)
    out = F.swiglu(gate, Tensor(np.ones(shape)))
    assert_close(out, F.silu(gate))
    out.backward(np.ones(shape))
    assert np.all((gate.grad > -0.1) & (gate.grad < 1.1))
    assert_close(gate.grad, F.silu(gate).creator.saved_arrays()["silu_slope"])


@pytest.mark.parametrize("gate,up", [((2, 3), (2, 4)), ((2, 3), (3,))])
def test_swiglu_shape_errors_are_one_line(gate, up):
    with pytest.raises(ShapeError, match=rf"swiglu: gate {gate} and up {up} must have one shape".replace("(", r"\(")
                       .replace(")", r"\)")) as error:
        F.swiglu(Tensor(np.zeros(gate)), Tensor(np.zeros(up)))
    assert "\n" not in str(error.value)


@needs_torch
def test_against_torch(rng):
    gate, up, x = tensor(rng, 2, 3, 8, scale=3), tensor(rng, 2, 3, 8), tensor(rng, 4, 5, scale=3)
    tgate, tup, tx = map(to_torch, (gate, up, x))
    pairs = [(F.swiglu(gate, up), torch.nn.functional.silu(tgate) * tup), (F.silu(x), torch.nn.functional.silu(tx))]
    for ours, theirs in pairs:
        assert_close(ours, theirs)
        g = rng.standard_normal(ours.shape)
        ours.backward(g)
        theirs.backward(torch.tensor(g))
    for a, t in [(gate, tgate), (up, tup), (x, tx)]:
        assert_close(a.grad, t.grad, rtol=1e-9, atol=1e-12)
