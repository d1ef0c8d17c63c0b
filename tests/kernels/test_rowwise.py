"""The CPU paths' last-axis reductions (BLAS products, column-by-column maxima) equal NumPy's."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_nlp.kernels.cpu.rowwise import leading_sum, row_max, row_mean, row_sum


@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 999))
def test_reductions_match_numpy(shape, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(row_sum(x), x.sum(-1, keepdims=True), **tol)
    np.testing.assert_allclose(row_mean(x, keepdims=False), x.mean(-1), **tol)
    np.testing.assert_array_equal(row_max(x), x.max(-1, keepdims=True))
    np.testing.assert_allclose(leading_sum(x), x.reshape(-1, x.shape[-1]).sum(0), **tol)
    assert row_sum(x).dtype == row_max(x).dtype == leading_sum(x).dtype == dtype


@pytest.mark.parametrize("width", [5, 100])
def test_row_max_propagates_nan_and_handles_inf(width):
    x = np.zeros((3, width))
    x[0, 2], x[1, 3], x[2, :] = np.nan, -np.inf, -np.inf
    out = row_max(x, keepdims=False)
    assert np.isnan(out[0]) and out[1] == 0 and out[2] == -np.inf


def test_non_contiguous_input():
    x = np.arange(24.0).reshape(4, 6).T  # (6, 4), strided
    np.testing.assert_array_equal(row_sum(x, keepdims=False), x.sum(-1))
    np.testing.assert_array_equal(row_max(x, keepdims=False), x.max(-1))
    np.testing.assert_array_equal(leading_sum(x), x.sum(0))
