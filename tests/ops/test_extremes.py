"""Extreme float32 inputs: every op's output and gradients stay finite, and the values
are the mathematically right ones where they are known."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor, manual_seed

f32 = np.float32
EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4], [5.0, 5.0, 5.0, 5.0]], dtype=f32)


def run(fn, *arrays):
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(np.ones(out.shape, dtype=f32))
    assert out.dtype == f32 and np.all(np.isfinite(out.numpy())), out.numpy()
    for t in tensors:
        assert t.grad.dtype == f32 and np.all(np.isfinite(t.grad)), t.grad
    return out.numpy(), [t.grad for t in tensors]


def test_softmax_family_with_logits_of_1e4():
    probs, _ = run(F.softmax, EXTREME_LOGITS)
    np.testing.assert_allclose(probs[0], [0.5, 0, 0, 0.5])
    np.testing.assert_allclose(probs[1:], 0.25)
    logp, _ = run(F.log_softmax, EXTREME_LOGITS)
    assert logp[0, 1] == pytest.approx(-2e4 - np.log(2), rel=1e-6)
    loss, (grad,) = run(lambda x: F.cross_entropy(x, np.array([1, 2, -100])), EXTREME_LOGITS)
    assert loss == pytest.approx((2e4 + np.log(2) + np.log(4)) / 2, rel=1e-6)
    np.testing.assert_allclose(grad.sum(1), 0, atol=1e-6)


def test_linear_cross_entropy_with_huge_activations():
    x = np.array([[1e3, -1e3], [0.0, 0.0]], dtype=f32)
    w = np.array([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]], dtype=f32)
    loss, grads = run(lambda x, w: F.linear_cross_entropy(x, w, np.array([1, 0])), x, w)
    assert loss == pytest.approx((2e4 + np.log(3)) / 2, rel=1e-5)


@pytest.mark.parametrize("row", [np.full(6, 1e4), np.zeros(6), np.full(6, -3.5), np.array([1e4, -1e4] * 3)])
def test_layer_norm_constant_and_huge_rows(row):
    x = np.stack([row, row * 0.5]).astype(f32)
    w, b = np.full(6, 2.0, f32), np.arange(6, dtype=f32)
    out, _ = run(F.layer_norm, x, w, b)
    if np.ptp(row) == 0:  # zero variance: x - mean = 0, so the output is the bias
        np.testing.assert_allclose(out, np.stack([b, b]))
    else:
        np.testing.assert_allclose(out[0], 2 * np.sign(row) + b, rtol=1e-5)


@pytest.mark.parametrize("mask", [None, "all_masked"])
def test_attention_with_huge_scores(mask):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 3, 4)).astype(f32) * 100 for _ in range(3))
    m = np.array([[True, True, False], [False, False, False]]) if mask else None
    out, _ = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=m), q, k, v)
    if mask:
        assert np.all(out[1] == 0)
    qkv = rng.standard_normal((2, 3, 12)).astype(f32) * 1e3
    run(lambda x: F.self_attention(x, 2, mask=m), qkv)


def test_dropout_extremes_and_other_ops():
    x = np.array([[1e30, -1e30, 0.0]], dtype=f32)
    manual_seed(0)
    out, (grad,) = run(lambda t: F.dropout(t, 1.0), x)
    assert np.all(out == 0) and np.all(grad == 0)
    run(lambda t: F.embedding(np.array([[0, 1, 1]]), t), np.array([[3e38, -3e38], [0.0, 1.0]], dtype=f32))
    run(lambda t: F.linear(t, Tensor(np.eye(3, dtype=f32) * 1e-30)), x)
    run(F.relu, x)
