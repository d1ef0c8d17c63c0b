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


def test_rows_per_block_fills_the_cache_on_the_cpu():
    assert backend.rows_per_block(np, 10_000, backend.CACHE_BLOCK_BYTES // 4) == 4
    assert backend.rows_per_block(np, 10, 10 * backend.CACHE_BLOCK_BYTES) == 1


def test_keep_mask_drops_p_of_the_elements():
    manual_seed(0)
    keep = backend.keep_mask(np, (1000, 1000), 0.25)
    assert keep.dtype == bool and abs(1 - keep.mean() - 0.25) < 0.002
    assert not backend.keep_mask(np, (3,), 1.0).any() and backend.keep_mask(np, (3,), 0.0).all()


def test_per_device_runs_the_cpu_version_on_numpy_arrays():
    both = backend.per_device(cpu=lambda x: "cpu", cuda=lambda x: "cuda")
    assert both(np.zeros(2)) == "cpu"


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



def _page_faults_of_reusing(megabytes=1, times=20):
    """Minor page faults taken by allocating, filling and freeing the same size of array
    (1 MiB: below the size NumPy asks huge pages for)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        np.ones(megabytes << 18, dtype=np.float32)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not backend.keep_host_memory(), reason="the C library has no mallopt (not glibc)")
def test_kept_host_memory_serves_the_next_allocation_without_page_faults():
    pages = 20 * (1 << 20) // 4096
    try:
        assert backend.keep_host_memory(False) and not backend.host_memory_kept
        assert _page_faults_of_reusing() > pages // 2  # each new block is fresh pages
        assert backend.keep_host_memory(True) and backend.host_memory_kept
        _page_faults_of_reusing(times=1)
        assert _page_faults_of_reusing() < pages // 20  # the freed block is reused
    finally:
        backend.keep_host_memory(True)


@pytest.mark.skipif(not backend.keep_host_memory(), reason="the C library has no mallopt (not glibc)")
def test_host_memory_is_kept_at_import_unless_asked_not_to():
    import os
    import subprocess
    import sys
    code = "from tinygrad_nlp import backend; print(backend.host_memory_kept)"
    kept = {setting: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=dict(os.environ, TINYGRAD_NLP_KEEP_HOST_MEMORY=setting)).stdout.strip()
            for setting in ("0", "1")}
    assert kept == {"0": "False", "1": "True"}
