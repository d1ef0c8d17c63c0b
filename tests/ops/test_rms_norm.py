import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ShapeError, Tensor, nn


def reference(x, w, eps=1e-6):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1, 1, 2), (1, 7)])
def test_rms_norm_gradients(shape, rng):
    x, w = tensor(rng, *shape), tensor(rng, shape[-1])
    check_both_modes(F.rms_norm, [x, w])


@pytest.mark.parametrize("width", [1, 4])
def test_rms_norm_gradients_with_a_large_eps(width, rng):
    """eps comparable to the mean square, and a row of one element (whose dL/dx is
    w eps / (x^2 + eps)^(3/2): about 1e-6 with the default eps, below what finite
    differences resolve, hence the large eps here)."""
    x, w = tensor(rng, 3, width, scale=0.3), tensor(rng, width)
    check_both_modes(lambda x, w: F.rms_norm(x, w, eps=0.5), [x, w])


def test_rms_norm_forward(rng):
    x, w = tensor(rng, 4, 6), tensor(rng, 6)
    assert_close(F.rms_norm(x, w), reference(x.numpy(), w.numpy()))
    assert_close(F.rms_norm(x, w, eps=0.25), reference(x.numpy(), w.numpy(), eps=0.25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_rows_and_huge_values_stay_finite(dtype):
    x = Tensor(np.array([[0.0, 0.0, 0.0], [1e4, -1e4, 3.0], [2.0, 2.0, 2.0]], dtype=dtype), requires_grad=True)
    w = Tensor(np.ones(3, dtype=dtype), requires_grad=True)
    y = F.rms_norm(x, w)
    y.backward(np.ones_like(y.data))
    assert y.dtype == dtype and x.grad.dtype == dtype
    for a in (y.data, x.grad, w.grad):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(y.data[0], 0)
    np.testing.assert_allclose(y.data[2], 1, rtol=1e-5)  # a constant row c: c / |c|


def test_integer_input_is_computed_in_float32():
    y = F.rms_norm(np.array([[1, 2, 3]]), np.ones(3, dtype=np.float32))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), reference(np.array([[1.0, 2.0, 3.0]]), 1.0), rtol=1e-6)


def test_saves_x_weight_and_rstd_only(rng):
    x, w = tensor(rng, 2, 3, 5), tensor(rng, 5)
    saved = F.rms_norm(x, w).creator.saved_arrays()
    assert list(saved) == ["x", "weight", "rstd"] and saved["rstd"].shape == (2, 3, 1)


@pytest.mark.parametrize("x_shape,w_shape", [((2, 4), (3,)), ((), (1,)), ((2, 4), (4, 1))])
def test_shape_errors_are_one_line(x_shape, w_shape):
    with pytest.raises(ShapeError) as error:
        F.rms_norm(Tensor(np.zeros(x_shape)), Tensor(np.ones(w_shape)))
    message = str(error.value)
    assert message.startswith("rms_norm: ") and "\n" not in message and str(w_shape) in message


@given(rows=st.integers(1, 4), width=st.integers(1, 9), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       seed=st.integers(0, 999))
def test_rms_norm_property(rows, width, scale, seed):
    """With eps = 0 and weight 1 each row comes out with mean square 1, the same for any
    positive scale of the row, so the gradient of a row is orthogonal to the row itself."""
    rng = np.random.default_rng(seed)
    x = tensor(rng, rows, width, scale=scale)
    y = F.rms_norm(x, Tensor(np.ones(width)), eps=0.0)
    np.testing.assert_allclose((y.numpy() ** 2).mean(-1), 1, rtol=1e-12)
    assert_close(F.rms_norm(Tensor(x.numpy() * 7.5), Tensor(np.ones(width)), eps=0.0), y.numpy(), atol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(g)  # sum_i x_i dL/dx_i = sum_i xhat_i dxhat_i - (sum_i xhat_i^2) mean(dxhat xhat) = 0, terms of size |g|
    np.testing.assert_allclose((x.grad * x.numpy()).sum(-1), 0, atol=1e-13 * width * np.abs(g).max())


def test_module_starts_at_weight_one_and_is_the_function(rng):
    norm = nn.RMSNorm(6, eps=1e-5)
    assert [name for name, _ in norm.named_parameters()] == ["weight"]
    assert norm.weight.dtype == np.float32 and np.all(norm.weight.numpy() == 1)
    x = Tensor(rng.standard_normal((2, 3, 6)).astype(np.float32))
    assert_close(norm(x), reference(x.numpy().astype(np.float64), 1.0, eps=1e-5), rtol=1e-6, atol=1e-6)
    assert repr(norm) == "RMSNorm(6, eps=1e-05)"
    assert set(norm.state_dict()) == {"weight"}


@needs_torch
@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_against_torch(eps, rng):
    x, w = tensor(rng, 2, 3, 8), tensor(rng, 8)
    tx, tw = map(to_torch, (x, w))
    out, tout = F.rms_norm(x, w, eps=eps), torch.nn.functional.rms_norm(tx, (8,), tw, eps=eps)
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for a, t in [(x, tx), (w, tw)]:
        assert_close(a.grad, t.grad, rtol=1e-9, atol=1e-12)


@needs_torch
def test_module_matches_transformers_llama_rms_norm(rng):
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    theirs = llama.LlamaRMSNorm(8, eps=1e-6)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.standard_normal(8).astype(np.float32)))
    ours = nn.RMSNorm(8)
    ours.load_state_dict({"weight": theirs.weight.detach().numpy()})
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    assert_close(ours(Tensor(x)), theirs(torch.tensor(x)), rtol=1e-5, atol=1e-6)
