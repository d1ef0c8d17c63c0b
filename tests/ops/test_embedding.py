import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import Tensor, TokenIdError
from tinygrad_nlp.kernels.cpu.segment_sum import scatter_add_rows


@pytest.mark.parametrize("ids", [np.array([[1, 2, 1], [0, 1, 4]]), np.array([3]), np.array([[[2, 2, 2]]]),
                                 np.array(4), np.array([0, 1], dtype=np.int32)])
def test_embedding_gradients(ids, rng):
    weight = tensor(rng, 5, 3)
    check_both_modes(lambda w: F.embedding(ids, w), [weight])
    assert F.embedding(ids, weight).shape == ids.shape + (3,)


def test_repeated_ids_accumulate():
    weight = Tensor(np.zeros((4, 2)), requires_grad=True)
    F.embedding(np.array([[1, 1], [1, 3]]), weight).sum().backward()
    np.testing.assert_array_equal(weight.grad, [[0, 0], [3, 3], [0, 0], [1, 1]])


def test_int_tensor_ids(rng):
    weight = tensor(rng, 5, 3)
    assert_close(F.embedding(Tensor(np.array([4, 0])), weight), weight.numpy()[[4, 0]])


@pytest.mark.parametrize("ids,match", [(np.array([[0, 7]]), r"token id 7 at position \(0, 1\).*vocabulary of 5"),
                                       (np.array([-1]), r"token id -1 at position \(0,\)"),
                                       (np.array([1.0]), r"integers, got dtype float64")])
def test_bad_ids(ids, match):
    with pytest.raises(TokenIdError, match=match):
        F.embedding(ids, Tensor(np.zeros((5, 3))))


@given(ids=st.lists(st.integers(0, 6), min_size=1, max_size=30), dim=st.integers(1, 5))
def test_scatter_add_matches_add_at(ids, dim):
    rng = np.random.default_rng(len(ids))
    ids = np.array(ids)
    weight = tensor(rng, 7, dim)
    g = rng.standard_normal((len(ids), dim))
    F.embedding(ids, weight).backward(g)
    expected = np.zeros((7, dim))
    np.add.at(expected, ids, g)
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-12, atol=1e-12)


@needs_torch
def test_against_torch(rng):
    ids = rng.integers(0, 6, (3, 4))
    weight = tensor(rng, 6, 5)
    tw = to_torch(weight)
    out, tout = F.embedding(ids, weight), torch.nn.functional.embedding(torch.tensor(ids), tw)
    assert_close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    assert_close(weight.grad, tw.grad)


@pytest.mark.parametrize("n,rows", [(50, 9), (50, 1000), (1, 3), (7, 7)])
def test_scatter_add_rows(n, rows, rng):
    """Ids that repeat (summed) and ids that occur once (copied), mixed, as np.add.at."""
    ids = rng.integers(0, rows, n)
    vals = rng.standard_normal((n, 3))
    expected = np.zeros((rows, 3))
    np.add.at(expected, ids, vals)
    np.testing.assert_allclose(scatter_add_rows(rows, ids, vals), expected, atol=1e-12)
