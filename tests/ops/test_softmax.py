import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tests.test_fast_paths import compare_paths
from tinygrad_nlp import ShapeError, Tensor, TokenIdError, backend, no_grad
from tinygrad_nlp.kernels.cpu import lm_head, row_softmax


@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 3, 4), 1), ((1, 1), -1), ((4,), 0)])
def test_softmax_and_log_softmax_gradients(shape, axis, rng):
    x = tensor(rng, *shape)
    check_both_modes(lambda x: F.softmax(x, axis=axis), [x])
    check_both_modes(lambda x: F.log_softmax(x, axis=axis), [x])


@pytest.mark.parametrize("targets", [[1, -100, 3, 0], [2, 2, 2, 2], [0, -100, -100, -100]])
def test_cross_entropy_gradients(targets, rng):
    logits = tensor(rng, 4, 5)
    check_both_modes(lambda x: F.cross_entropy(x, np.array(targets)), [logits])


def test_cross_entropy_custom_ignore_index_and_nd(rng):
    logits = tensor(rng, 2, 3, 4)
    targets = np.array([[0, 3, 7], [7, 1, 2]])
    check_both_modes(lambda x: F.cross_entropy(x, targets, ignore_index=7), [logits])


def test_cross_entropy_value(rng):
    logits = tensor(rng, 4, 5)
    t = np.array([1, -100, 3, 0])
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    expected = -(logp[0, 1] + logp[2, 3] + logp[3, 0]) / 3
    assert abs(F.cross_entropy(logits, t).item() - expected) < 1e-12


def test_all_ignored_targets_give_zero_loss_and_gradient(rng):
    logits = tensor(rng, 3, 4)
    loss = F.cross_entropy(logits, np.full(3, -100))
    loss.backward()
    assert loss.item() == 0.0 and np.all(logits.grad == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite(dtype):
    x = Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [5.0, 5.0, 5.0]], dtype=dtype), requires_grad=True)
    for fn in (F.softmax, F.log_softmax, lambda x: F.cross_entropy(x, np.array([1, 0, 2]))):
        x.grad = None
        out = fn(x)
        out.backward(np.ones_like(out.data))
        assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(x.grad))
    assert abs(F.cross_entropy(x, np.array([0, 0, 0])).item() - (0 + np.log(3) + np.log(3)) / 3) < 1e-5


def test_errors():
    with pytest.raises(ShapeError, match=r"logits \(4, 5\).*targets \(3,\)"):
        F.cross_entropy(Tensor(np.zeros((4, 5))), np.zeros(3, dtype=int))
    with pytest.raises(TokenIdError, match=r"target 5 at position \(1,\)"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([0, 5]))


@given(n=st.integers(1, 6), c=st.integers(1, 7), scale=st.sampled_from([1.0, 100.0, 1e4]), seed=st.integers(0, 999))
def test_cross_entropy_property(n, c, scale, seed):
    rng = np.random.default_rng(seed)
    logits = tensor(rng, n, c, scale=scale)
    targets = np.where(rng.random(n) < 0.3, -100, rng.integers(0, c, n))
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logits.grad))
    np.testing.assert_allclose(logits.grad.sum(axis=1), 0, atol=1e-12)  # softmax - onehot sums to 0
    assert np.all(logits.grad[targets == -100] == 0)
    probs = F.softmax(logits).numpy()
    np.testing.assert_allclose(probs.sum(-1), 1)


@needs_torch
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "cross_entropy"])
def test_against_torch(op, rng):
    x = tensor(rng, 6, 5, scale=3)
    tx = to_torch(x)
    t = np.array([1, -100, 3, 0, 4, 4])
    if op == "cross_entropy":
        out, tout = F.cross_entropy(x, t), torch.nn.functional.cross_entropy(tx, torch.tensor(t))
        g = np.array(1.7)
    else:
        out, tout = getattr(F, op)(x, axis=0), getattr(torch, op)(tx, dim=0)
        g = rng.standard_normal(out.shape)
    assert_close(out, tout)
    out.backward(g)
    tout.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("targets", [[1, -100, 3, 0], [-100, -100, -100, -100]])
def test_linear_cross_entropy_gradients(with_bias, targets, rng):
    x, w, b = tensor(rng, 4, 3), tensor(rng, 6, 3), tensor(rng, 6)
    t = np.array(targets)
    if with_bias:
        check_both_modes(lambda x, w, b: F.linear_cross_entropy(x, w, t, bias=b), [x, w, b])
    else:
        check_both_modes(lambda x, w: F.linear_cross_entropy(x, w, t), [x, w])


@given(n=st.integers(1, 9), d=st.integers(1, 5), c=st.integers(1, 9), bias=st.booleans(), seed=st.integers(0, 999),
       block_rows=st.sampled_from([None, 1, 2, 4]))
def test_linear_cross_entropy_equals_linear_then_cross_entropy(n, d, c, bias, seed, block_rows):
    rng = np.random.default_rng(seed)
    x, w, b = tensor(rng, n, d), tensor(rng, c, d), tensor(rng, c)
    t = np.where(rng.random(n) < 0.3, -100, rng.integers(0, c, n))
    with pytest.MonkeyPatch.context() as patch:
        if block_rows:  # blocks of (at most) that many scored rows
            patch.setattr(lm_head, "LOGITS_BLOCK_BYTES", block_rows * c * 8)
            patch.setattr(lm_head, "LOGITS_PER_WEIGHT_BYTE", 0)
        fused = F.linear_cross_entropy(x, w, t, bias=b if bias else None)
        fused.backward(np.array(0.7))
    grads = [p.grad for p in (x, w, b)]
    for p in (x, w, b):
        p.grad = None
    plain = F.cross_entropy(F.linear(x, w, b if bias else None), t)
    plain.backward(np.array(0.7))
    assert_close(fused, plain)
    for g, p in zip(grads, (x, w, b)):
        if bias or p is not b:
            assert_close(g, p.grad)


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_in_many_row_blocks(with_bias, rng, monkeypatch):
    """Blocks of one scored row (the weight's and bias's gradients summed over 4 blocks,
    targets repeated across blocks, an unscored row between them): float64 finite
    differences, and the same value and gradients as one block."""
    x, w, b = tensor(rng, 5, 3, scale=4), tensor(rng, 7, 3), tensor(rng, 7)
    t = np.array([6, 0, -100, 3, 3])
    args = [x, w, b] if with_bias else [x, w]
    loss = lambda x, w, b=None: F.linear_cross_entropy(x, w, t, bias=b)  # noqa: E731
    whole = loss(*args)
    whole.backward()
    expected = [p.grad for p in args]
    for p in args:
        p.grad = None
    monkeypatch.setattr(lm_head, "LOGITS_BLOCK_BYTES", 7 * 8)  # one row of 7 float64 logits
    monkeypatch.setattr(lm_head, "LOGITS_PER_WEIGHT_BYTE", 0)
    assert len(lm_head.logit_row_blocks(np, 4, 7, 8, 3)) == 4
    chunked = loss(*args)
    chunked.backward()
    assert_close(chunked, whole)
    for p, g in zip(args, expected):
        assert_close(p.grad, g)
    check_both_modes(loss, args)


def test_linear_cross_entropy_graphs_stay_apart(rng):
    """Two losses alive at once, a retained graph and a no-grad forward: each backward
    gives the gradients of its own inputs."""
    w = tensor(rng, 7, 4)
    xs = [tensor(rng, 5, 4) for _ in range(2)]
    t = rng.integers(0, 7, 5)
    expected = []
    for x in xs:
        F.cross_entropy(F.linear(x, w), t).backward()
        expected.append(x.grad)
        x.grad = None
    w.grad = None
    first, second = (F.linear_cross_entropy(x, w, t) for x in xs)
    with no_grad():
        F.linear_cross_entropy(xs[0] * 3.0, w, t)
    second.backward(retain_graph=True)
    second.backward()
    first.backward()
    assert_close(xs[0].grad, expected[0])
    assert_close(xs[1].grad, 2 * expected[1])


def test_linear_cross_entropy_errors():
    with pytest.raises(ShapeError, match=r"linear_cross_entropy: input \(4, 3\) does not fit weight \(6, 2\)"):
        F.linear_cross_entropy(Tensor(np.zeros((4, 3))), Tensor(np.zeros((6, 2))), np.zeros(4, dtype=int))
    with pytest.raises(ShapeError, match=r"targets \(3,\) do not fit input \(4, 3\)"):
        F.linear_cross_entropy(Tensor(np.zeros((4, 3))), Tensor(np.zeros((6, 3))), np.zeros(3, dtype=int))
    with pytest.raises(TokenIdError, match=r"target 6 at position \(2,\) is out of range for 6 classes"):
        F.linear_cross_entropy(Tensor(np.zeros((4, 3))), Tensor(np.zeros((6, 3))), np.array([0, 1, 6, 2]))


def test_large_rows_go_through_in_cache_sized_blocks(rng, monkeypatch):
    """The blocked softmax of cross_entropy (taken when rows exceed the block size)
    agrees with the one-pass formula."""
    monkeypatch.setattr(backend.arrays, "CACHE_BLOCK_BYTES", 64)  # blocks of 1 row here
    logits = tensor(rng, 5, 9, scale=30)
    t = np.array([0, 8, -100, 3, 3])
    loss = F.cross_entropy(logits, t)
    logp = logits.numpy() - np.log(np.exp(logits.numpy() - 90).sum(1, keepdims=True)) - 90
    assert abs(loss.item() + logp[[0, 1, 3, 4], [0, 8, 3, 3]].mean()) < 1e-12
    check_both_modes(lambda x: F.cross_entropy(x, t), [logits])


@needs_torch
def test_linear_cross_entropy_against_torch(rng):
    x, w, b = tensor(rng, 6, 4), tensor(rng, 9, 4), tensor(rng, 9)
    t = np.array([1, -100, 8, 0, 4, 4])
    tx, tw, tb = to_torch(x), to_torch(w), to_torch(b)
    out = F.linear_cross_entropy(x, w, t, bias=b)
    tout = torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw, tb), torch.tensor(t))
    assert_close(out, tout)
    out.backward()
    tout.backward()
    for a, ta in ((x, tx), (w, tw), (b, tb)):
        assert_close(a.grad, ta.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
def test_rows_far_below_their_block_keep_full_precision(dtype, in_place, rng):
    """Short rows share one shift per block (the block's maximum); a row whose
    maximum lies far below it (here 10 to 1000 below), or that is all -inf, is made
    again with its own: every row's softmax matches the exact row-max formula to a few
    ulps, small probabilities included."""
    x = rng.standard_normal((64, 20)).astype(dtype) * 5
    x[1::4] -= 1000  # these rows' exponentials would all underflow against the block max
    x[2::4] -= 10
    x[3, :] = -np.inf
    x[5, :7] = -np.inf
    with np.errstate(invalid="ignore"):  # row 3: -inf - -inf
        expected = np.exp(x - x.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
    expected[3] = 0
    before = x.copy()
    got = row_softmax.softmax_rows(x, out=x if in_place else None, masked_rows=True)
    assert (got is x) == in_place and (in_place or np.array_equal(x, before, equal_nan=True))
    np.testing.assert_allclose(got, expected, rtol=8 * np.finfo(dtype).eps * 20, atol=0)
    e, shift, total = row_softmax.exp_rows(before[[0, 1]])
    assert shift[0, 0] == before[0].max() and shift[1, 0] == before[1].max()  # 1000 below: its own
    e, shift, total = row_softmax.exp_rows(before[:8][[0, 2, 4, 6]])
    assert np.all(shift == before[:8][[0, 4]].max())  # 10 below: shared


# -- each fast path (kernels/cpu) equals its textbook op (ops/): values to float32 rounding,
# float64 gradients to 1e-10 relative (tests/test_fast_paths.py's compare_paths) ---------------
def _inputs(*arrays):
    return lambda dtype: [Tensor(a.astype(dtype), requires_grad=True) for a in arrays]


def _float32_rtol(offset):
    """float32 rounding, and that of a shift of ``offset``'s size (a shared block maximum)."""
    return 2e-5 + 4 * offset * np.finfo(np.float32).eps


def _logits(rng, shape, offset, holes, finite=None):
    """Standard normal logits (..., C) whose rows lie up to ``offset`` apart (so a row may
    fall far below its block's shared maximum), with about a fifth of the entries -inf
    when ``holes``, but never where ``finite`` (a boolean mask; default: the last column)."""
    x = rng.standard_normal(shape) + offset * rng.random(shape[:-1] + (1,))
    if finite is None:
        finite = np.arange(shape[-1]) == shape[-1] - 1
    return np.where(holes & (rng.random(shape) < 0.2) & ~finite, -np.inf, x)


def _with_block_bytes(block_bytes, fn):
    """fn with the row-softmax engine's blocks of ``block_bytes`` (a few rows; None: the default)."""
    def run(*args):
        with pytest.MonkeyPatch.context() as patch:
            if block_bytes:
                patch.setattr(backend.arrays, "CACHE_BLOCK_BYTES", block_bytes)
            return fn(*args)
    return run


@given(rows=st.lists(st.integers(1, 6), min_size=0, max_size=2), width=st.integers(1, 40), axis=st.integers(-3, 2),
       offset=st.sampled_from([0.0, 1e3]), holes=st.booleans(), block=st.sampled_from([None, 256]),
       seed=st.integers(0, 2**16))
def test_softmax_fast_path_equals_the_textbook_op(rows, width, axis, offset, holes, block, seed):
    axis = axis % (len(rows) + 1)
    x = np.moveaxis(_logits(np.random.default_rng(seed), (*rows, width), offset, holes), -1, axis)  # rows along axis
    compare_paths(_with_block_bytes(block, lambda t: F.softmax(t, axis=axis)), _inputs(x), "softmax",
                  float32_rtol=_float32_rtol(offset))


@given(rows=st.lists(st.integers(1, 6), min_size=1, max_size=2), width=st.integers(1, 40), axis=st.integers(-3, 2),
       offset=st.sampled_from([0.0, 1e3]), block=st.sampled_from([None, 256]), seed=st.integers(0, 2**16))
def test_log_softmax_fast_path_equals_the_textbook_op(rows, width, axis, offset, block, seed):
    axis = axis % (len(rows) + 1)
    assume(width > 1)  # one class: log-softmax is 0, the fast path's rounding of x - x is not
    x = np.moveaxis(_logits(np.random.default_rng(seed), (*rows, width), offset, holes=False), -1, axis)
    compare_paths(_with_block_bytes(block, lambda t: F.log_softmax(t, axis=axis)), _inputs(x), "log_softmax",
                  float32_rtol=_float32_rtol(offset))


@given(rows=st.lists(st.integers(1, 6), min_size=1, max_size=2), classes=st.integers(2, 40),
       ignored=st.sampled_from([0.0, 0.3, 1.0]), offset=st.sampled_from([0.0, 1e3]), holes=st.booleans(),
       block=st.sampled_from([None, 256]), seed=st.integers(0, 2**16))
def test_cross_entropy_fast_path_equals_the_textbook_op(rows, classes, ignored, offset, holes, block, seed):
    """Ignored targets (some, or all), -inf logits (never a target's), rows far apart."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, rows)
    x = _logits(rng, (*rows, classes), offset, holes, finite=np.arange(classes) == targets[..., None])
    targets[rng.random(targets.shape) < ignored] = -100
    compare_paths(_with_block_bytes(block, lambda t: F.cross_entropy(t, targets)), _inputs(x), "cross_entropy",
                  float32_rtol=_float32_rtol(offset))


@given(n=st.integers(1, 12), d=st.integers(1, 6), classes=st.integers(2, 30), bias=st.booleans(),
       ignored=st.sampled_from([0.0, 0.3, 1.0]), offset=st.sampled_from([0.0, 1e3]), block_rows=st.sampled_from([1, 3, None]),
       seed=st.integers(0, 2**16))
def test_linear_cross_entropy_fast_path_equals_the_textbook_op(n, d, classes, bias, ignored, offset, block_rows, seed):
    """Several row blocks of logits (``block_rows`` float64 rows each; twice as many in
    float32), ignored rows between them, logits offset by a large bias."""
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, d)), rng.standard_normal((classes, d)), rng.standard_normal(classes) + offset
    targets = np.where(rng.random(n) < ignored, -100, rng.integers(0, classes, n))
    arrays = (x, w, b) if bias else (x, w)

    def loss(x, w, b=None):
        with pytest.MonkeyPatch.context() as patch:
            if block_rows:
                patch.setattr(lm_head, "LOGITS_BLOCK_BYTES", block_rows * classes * 8)
                patch.setattr(lm_head, "LOGITS_PER_WEIGHT_BYTE", 0)
            return F.linear_cross_entropy(x, w, targets, bias=b)
    compare_paths(loss, _inputs(*arrays), "linear_cross_entropy", float32_rtol=_float32_rtol(offset))
