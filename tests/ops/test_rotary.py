import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, torch
from tinygrad_nlp import ArgumentError, ShapeError, Tensor


def reference(x, positions, theta=10000.0):
    """Each pair (i, i + Dh/2) turned by position * theta^(-2i/Dh), written pair by pair."""
    half = x.shape[-1] // 2
    angle = np.asarray(positions, dtype=np.float64)[..., None] * theta ** (-2.0 * np.arange(half) / x.shape[-1])
    if angle.ndim == 3:
        angle = angle[:, None]  # (B, 1, T, Dh/2)
    c, s = np.cos(angle), np.sin(angle)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


@pytest.mark.parametrize("positions", [np.arange(4), np.array([7, 8, 9, 10]), np.array([[0, 1, 2, 3], [5, 3, 100, 0]])])
def test_rotary_gradients(positions, rng):
    x = tensor(rng, 2, 3, 4, 6)
    check_both_modes(lambda x: F.rotary_embedding(x, positions), [x])


def test_rotary_gradients_with_another_theta(rng):
    x = tensor(rng, 1, 2, 3, 8)
    check_both_modes(lambda x: F.rotary_embedding(x, [2, 5, 11], theta=50.0), [x])


@pytest.mark.parametrize("theta", [10000.0, 500000.0, 3.0])
def test_rotary_forward_turns_each_pair(theta, rng):
    x = rng.standard_normal((2, 3, 5, 8))
    positions = np.array([0, 1, 2, 40, 1000])
    assert_close(F.rotary_embedding(Tensor(x), positions, theta=theta), reference(x, positions, theta))
    per_example = np.array([[0, 1, 2, 3, 4], [9, 10, 11, 12, 13]])
    assert_close(F.rotary_embedding(Tensor(x), per_example, theta=theta), reference(x, per_example, theta))


def test_position_zero_is_the_identity_and_minus_the_positions_undo_it(rng):
    x = rng.standard_normal((2, 2, 3, 4))
    assert_close(F.rotary_embedding(Tensor(x), np.zeros(3, dtype=np.int64)), x)
    positions = np.array([4, 17, 2])
    turned = F.rotary_embedding(Tensor(x), positions)
    assert_close(F.rotary_embedding(turned, -positions), x, atol=1e-12)


def test_backward_is_the_rotation_by_minus_the_angle(rng):
    x = tensor(rng, 2, 3, 4, 6)
    positions = np.array([[3, 4, 5, 6], [0, 10, 20, 30]])
    g = rng.standard_normal(x.shape)
    F.rotary_embedding(x, positions).backward(g)
    assert_close(x.grad, reference(g, -positions))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_the_dtype_and_saves_only_cos_and_sin(dtype, rng):
    x = Tensor(rng.standard_normal((2, 3, 4, 6)).astype(dtype), requires_grad=True)
    y = F.rotary_embedding(x, np.arange(4))
    assert y.dtype == dtype
    saved = y.creator.saved_arrays()
    assert list(saved) == ["cos", "sin"] and all(a.shape == (4, 6) and a.dtype == dtype for a in saved.values())
    assert_close(y, reference(x.numpy().astype(np.float64), np.arange(4)), rtol=1e-5, atol=1e-6)


def test_a_cached_step_with_offset_positions_equals_the_full_sequence(rng):
    """The last 2 of 6 positions turned alone, at positions 4 and 5, as a decoding step after
    a KV cache of length 4 does, equal the same rows of the whole sequence turned at once."""
    x = rng.standard_normal((1, 2, 6, 8))
    whole = F.rotary_embedding(Tensor(x), np.arange(6)).numpy()
    step = F.rotary_embedding(Tensor(x[:, :, 4:]), np.arange(4, 6)).numpy()
    assert_close(step, whole[:, :, 4:])


@given(Dh=st.sampled_from([2, 4, 8]), m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(-500, 500),
       seed=st.integers(0, 999))
def test_scores_depend_only_on_the_distance_between_positions(Dh, m, n, shift, seed):
    """RoPE's point: q turned to position m dotted with k turned to position n is a function of
    m - n alone; and a turn keeps each vector's length."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, 1, 1, 1, Dh))

    def score(i, j):
        return float((F.rotary_embedding(Tensor(q), [i]).numpy() * F.rotary_embedding(Tensor(k), [j]).numpy()).sum())
    a, b = m + abs(shift), n + abs(shift)  # non-negative positions
    np.testing.assert_allclose(score(m, n), score(a, b), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(F.rotary_embedding(Tensor(q), [m]).numpy()), np.linalg.norm(q), rtol=1e-12)


@pytest.mark.parametrize("shape,positions,message", [
    ((2, 3, 4, 5), np.arange(4), r"input \(2, 3, 4, 5\) must be \(B, H, T, Dh\) with Dh even"),
    ((3, 4, 6), np.arange(4), r"input \(3, 4, 6\) must be \(B, H, T, Dh\)"),
    ((2, 3, 4, 6), np.arange(5), r"positions int64 \(5,\) must be integers of shape \(4,\) or \(2, 4\)"),
    ((2, 3, 4, 6), np.zeros((3, 4), dtype=np.int64), r"positions int64 \(3, 4\)"),
    ((2, 3, 4, 6), np.arange(4.0), r"positions float64 \(4,\) must be integers"),
])
def test_shape_errors_are_one_line(shape, positions, message):
    with pytest.raises(ShapeError, match=message) as error:
        F.rotary_embedding(Tensor(np.zeros(shape)), positions)
    assert str(error.value).startswith("rotary_embedding: ") and "\n" not in str(error.value)


def test_theta_must_be_positive():
    with pytest.raises(ArgumentError, match=r"rotary_embedding: theta must be > 0, got 0"):
        F.rotary_embedding(Tensor(np.zeros((1, 1, 2, 4))), [0, 1], theta=0)


@needs_torch
@pytest.mark.parametrize("positions", [np.array([3, 4, 5, 6, 7]), np.array([[0, 1, 2, 3, 4], [6, 7, 8, 9, 10]])])
def test_against_transformers_apply_rotary_pos_emb(positions, rng):
    """transformers' apply_rotary_pos_emb with cos and sin made in float64 (as ours): values
    and gradients exactly; with LlamaRotaryEmbedding's own cos and sin (float32 angles,
    cast to float64): values to float32 rounding of the angles."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    x = tensor(rng, 2, 4, 5, 16)
    out = F.rotary_embedding(x, positions, theta=10000.0)
    cos, sin = (torch.tensor(a) for a in (out.creator.cos, out.creator.sin))
    if cos.ndim == 4:
        cos, sin = cos[:, 0], sin[:, 0]  # transformers' (B, T, Dh), unsqueezed at the head axis
    else:
        cos, sin = cos[None], sin[None]
    tx = torch.tensor(x.numpy(), requires_grad=True)
    tout, _ = llama.apply_rotary_pos_emb(tx, tx.detach(), cos, sin)
    assert_close(out, tout, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-12)

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0)
    rope = llama.LlamaRotaryEmbedding(config)
    position_ids = torch.tensor(np.broadcast_to(positions, (2, 5)).copy())
    their_cos, their_sin = rope(tx, position_ids)
    theirs, _ = llama.apply_rotary_pos_emb(tx.detach(), tx.detach(), their_cos, their_sin)
    assert_close(out, theirs, rtol=1e-5, atol=1e-5)
