import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ShapeError, Tensor, TokenIdError


def test_reshape_transpose_permute(rng):
    x = tensor(rng, 2, 3, 4)
    check_both_modes(lambda x: F.reshape(x, (6, 4)), [x])
    check_both_modes(lambda x: F.transpose(x), [x])
    check_both_modes(lambda x: F.permute(x, (1, 2, 0)), [x])
    check_both_modes(lambda x: x.reshape(4, -1).T, [x])


def test_getitem_basic_and_integer_arrays(rng):
    x = tensor(rng, 4, 5)
    check_both_modes(lambda x: x[1:3, ::2], [x])
    check_both_modes(lambda x: x[np.array([0, 2, 2, 3])], [x])  # repeated rows accumulate
    check_both_modes(lambda x: x[np.array([0, 0, 1]), np.array([4, 4, 2])], [x])
    check_both_modes(lambda x: x[-1], [x])


def test_getitem_repeated_index_accumulates():
    x = Tensor(np.zeros(3), requires_grad=True)
    x[np.array([1, 1, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 0])


def test_scatter_rows_places_rows_and_its_gradient_picks_them(rng):
    x = tensor(rng, 4, 3)
    check_both_modes(lambda x: F.scatter_rows(x, np.array([5, 0, 2, 3]), 6), [x])
    check_both_modes(lambda x: F.scatter_rows(x, np.array([1, 1, 0, 1]), 2) * 1.5, [x])  # repeats add up
    y = F.scatter_rows(x, np.array([5, 0, 2, 3]), 6).numpy()
    np.testing.assert_array_equal(y[[5, 0, 2, 3]], x.numpy())
    assert not y[[1, 4]].any()


@needs_torch
def test_scatter_rows_matches_pytorch_index_add(rng):
    x = tensor(rng, 5, 2, 3)
    index = np.array([3, 0, 3, 6, 1])
    g = rng.standard_normal((7, 2, 3))
    out = F.scatter_rows(x, index, 7)
    out.backward(g)
    tx = to_torch(x)
    tout = torch.zeros(7, 2, 3, dtype=torch.float64).index_add(0, torch.tensor(index), tx)
    tout.backward(torch.tensor(g))
    assert_close(out, tout)
    assert_close(x.grad, tx.grad)


def test_scatter_rows_refuses_an_index_that_does_not_fit():
    x = Tensor(np.zeros((3, 2)))
    with pytest.raises(TokenIdError, match="scatter_rows: row index 4 at position \\(2,\\) is out of range for 4 rows"):
        F.scatter_rows(x, np.array([0, 1, 4]), 4)
    with pytest.raises(ShapeError, match=r"scatter_rows: index \(2,\) must be 1-D with one entry per row of x \(3, 2\)"):
        F.scatter_rows(x, np.array([0, 1]), 4)


def test_concatenate(rng):
    a, b, c = tensor(rng, 2, 3), tensor(rng, 2, 1), tensor(rng, 2, 4)
    check_both_modes(lambda a, b, c: F.concatenate([a, b, c], axis=1), [a, b, c])
    check_both_modes(lambda a: F.concatenate([a, a], axis=0), [a])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_mean(axis, keepdims, rng):
    x = tensor(rng, 2, 3, 4)
    check_both_modes(lambda x: F.sum(x, axis=axis, keepdims=keepdims), [x])
    check_both_modes(lambda x: F.mean(x, axis=axis, keepdims=keepdims), [x])
    assert_close(F.mean(x, axis, keepdims), x.numpy().mean(axis=axis, keepdims=keepdims))


def test_shape_errors():
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(4, 2\)"):
        F.reshape(Tensor(np.zeros((2, 3))), (4, 2))
    with pytest.raises(ShapeError, match="axes"):
        F.permute(Tensor(np.zeros((2, 3))), (0, 0))
    with pytest.raises(ShapeError, match="concatenate"):
        F.concatenate([Tensor(np.zeros((2, 3))), Tensor(np.zeros((3, 3)))], axis=1)


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_permute_roundtrip_property(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    x = Tensor(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), requires_grad=True)
    y = F.permute(x, perm)
    assert y.shape == tuple(shape[p] for p in perm)
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, np.transpose(g, np.argsort(perm)))


@needs_torch
def test_against_torch(rng):
    x = tensor(rng, 3, 4, 5)
    tx = to_torch(x)
    out = F.mean(F.permute(x, (2, 0, 1))[1:, np.array([0, 2, 2])], axis=1) * F.sum(x, axis=(0, 1))[1:].reshape(4, 1)
    tout = tx.permute(2, 0, 1)[1:, [0, 2, 2]].mean(dim=1) * tx.sum(dim=(0, 1))[1:].reshape(4, 1)
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad)
