import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import check_both_modes, tensor
from tinygrad_nlp import Tensor, manual_seed


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_rate_scale_and_mask_on_a_million_elements(p):
    manual_seed(0)
    x = Tensor(np.ones(1_000_000, dtype=np.float32), requires_grad=True)
    y = F.dropout(x, p)
    dropped = y.data == 0
    assert abs(dropped.mean() - p) < 0.01
    np.testing.assert_allclose(y.data[~dropped], 1 / (1 - p), rtol=1e-6)
    y.backward(np.full(y.shape, 2.0, dtype=np.float32))
    np.testing.assert_array_equal(x.grad == 0, dropped)  # the gradient uses the same mask
    np.testing.assert_allclose(x.grad[~dropped], 2 / (1 - p), rtol=1e-6)


def test_gradient_finite_differences(rng):
    x = tensor(rng, 4, 5)

    def fn(x):  # the same mask for every evaluation
        manual_seed(3)
        return F.dropout(x, 0.4)

    check_both_modes(fn, [x])


def test_identity_when_not_training_or_p_zero(rng):
    x = tensor(rng, 3, 3)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert np.all(F.dropout(x, 1.0).data == 0)


def test_bad_p():
    with pytest.raises(ValueError, match="1.5"):
        F.dropout(Tensor(np.ones(3)), 1.5)


def test_seed_reproduces_mask():
    x = Tensor(np.ones(100))
    manual_seed(7)
    a = F.dropout(x, 0.5).data
    manual_seed(7)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5).data)


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), p=st.floats(0.0, 0.95))
def test_expectation_is_preserved_property(shape, p):
    x = Tensor(np.ones(shape))
    y = F.dropout(x, p).data
    assert y.shape == tuple(shape)
    assert set(np.unique(y)).issubset({0.0, 1 / (1 - p)})
