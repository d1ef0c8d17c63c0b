import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import DeviceError, Tensor, backend, manual_seed


def test_get_array_module_cpu():
    assert backend.get_array_module(np.zeros(2), 3.0, None) is np


@pytest.mark.skipif(backend.cuda_available(), reason="checks the message shown when no GPU is present")
def test_cuda_request_without_gpu_says_how_to_install():
    with pytest.raises(DeviceError, match="pip install"):
        Tensor(np.zeros(2)).to("cuda")


def test_unknown_device():
    with pytest.raises(DeviceError, match="'tpu'"):
        Tensor(np.zeros(2)).to("tpu")


def test_manual_seed_reproduces_random_numbers():
    manual_seed(5)
    a = backend.uniform(np, (4,), np.float32)
    manual_seed(5)
    np.testing.assert_array_equal(a, backend.uniform(np, (4,), np.float32))


@pytest.mark.parametrize("n,rows", [(50, 9), (50, 1000), (1, 3), (7, 7)])
def test_scatter_add_rows(n, rows, rng):
    """Ids that repeat (summed) and ids that occur once (copied), mixed, as np.add.at."""
    ids = rng.integers(0, rows, n)
    vals = rng.standard_normal((n, 3))
    expected = np.zeros((rows, 3))
    np.add.at(expected, ids, vals)
    np.testing.assert_allclose(backend.scatter_add_rows(rows, ids, vals), expected, atol=1e-12)


class _FakeCupyArray:
    """Stands in for a CuPy array on machines without CuPy."""


def test_mixed_devices_error_names_both(monkeypatch):
    monkeypatch.setattr(backend, "is_cupy_array", lambda x: isinstance(x, _FakeCupyArray))
    with pytest.raises(DeviceError, match="'cpu'.*'cuda'"):
        backend.get_array_module(np.zeros(2), _FakeCupyArray())


@pytest.mark.gpu
def test_mixed_devices_in_an_op():
    with pytest.raises(DeviceError, match="'cpu'.*'cuda'"):
        F.add(Tensor(np.zeros(2)), Tensor(np.zeros(2)).to("cuda"))
