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
    a, mask = backend.rng(np).random(4), backend.keep_mask(np, (64,), 0.5)
    manual_seed(5)
    np.testing.assert_array_equal(a, backend.rng(np).random(4))
    np.testing.assert_array_equal(mask, backend.keep_mask(np, (64,), 0.5))


def test_rng_state_restores_every_stream_a_step_draws_from():
    manual_seed(7)
    backend.rng(np).random(3)
    backend.keep_mask(np, (10,), 0.5)
    state = backend.get_rng_state()
    after = backend.rng(np).random(4), backend.keep_mask(np, (40,), 0.3), backend.philox_place(8)
    manual_seed(99)  # another run's generators, as in a fresh process
    backend.set_rng_state(state)
    again = backend.rng(np).random(4), backend.keep_mask(np, (40,), 0.3), backend.philox_place(8)
    for a, b in zip(after, again):
        np.testing.assert_array_equal(a, b)


def test_a_random_state_without_the_dropout_count_is_refused_in_one_line():
    from tinygrad_nlp.errors import CheckpointError
    with pytest.raises(CheckpointError, match="no count of dropout draws"):
        backend.set_rng_state({"cpu": backend.rng(np).bit_generator.state, "philox_offset": 3})


@pytest.mark.parametrize("shape", [(7, 5, 3), (7, 1), (7, 4, 3, 6)])
def test_an_examples_mask_is_the_same_whichever_worker_draws_it(shape):
    """The masks of a batch cut into parts at any example boundaries, each part drawn
    by a worker at its place (``examples_from``), are the whole batch's mask."""
    manual_seed(11)
    whole = [backend.keep_mask(np, shape, 0.4) for _ in range(3)]  # three draws, as three dropout layers
    for cuts in ([0, 7], [0, 3, 7], [0, 1, 2, 6, 7]):
        manual_seed(11)
        parts = [[] for _ in range(3)]
        for start, stop in zip(cuts[:-1], cuts[1:]):  # each worker draws its three masks from the run's count
            with backend.examples_from(start, 0) as place:
                for draw in range(3):
                    parts[draw].append(backend.keep_mask(np, (stop - start, *shape[1:]), 0.4))
            assert place.next_draw == 3
        for draw in range(3):
            np.testing.assert_array_equal(np.concatenate(parts[draw]), whole[draw])


def test_draws_are_new_numbers_each_time_at_the_asked_rate():
    manual_seed(2)
    a, b = backend.keep_mask(np, (400, 500), 0.25), backend.keep_mask(np, (400, 500), 0.25)
    assert not np.array_equal(a, b) and backend.random.draws_made() == 2
    assert abs(a.mean() - 0.75) < 0.005 and abs(b.mean() - 0.75) < 0.005
    assert abs((a & b).mean() - 0.75 ** 2) < 0.005  # independent draws
    assert not backend.keep_mask(np, (3, 4), 1.0).any() and backend.keep_mask(np, (3, 4), 0.0).all()


def test_any_stretch_of_a_draw_is_the_stretch_of_the_whole_stream():
    manual_seed(5)
    stream = backend.random.draw_bits(3, 0, 101)
    for start in (0, 1, 2, 3, 4, 37):
        np.testing.assert_array_equal(backend.random.draw_bits(3, start, 101 - start), stream[start:])
    assert not np.array_equal(backend.random.draw_bits(4, 0, 101), stream)


def test_rows_per_block_fills_the_cache_on_the_cpu():
    assert backend.rows_per_block(np, 10_000, backend.CACHE_BLOCK_BYTES // 4) == 4
    assert backend.rows_per_block(np, 10, 10 * backend.CACHE_BLOCK_BYTES) == 1


def test_keep_mask_drops_p_of_the_elements():
    manual_seed(0)
    keep = backend.keep_mask(np, (1000, 1000), 0.25)
    assert keep.dtype == bool and abs(1 - keep.mean() - 0.25) < 0.002
    assert not backend.keep_mask(np, (3,), 1.0).any() and backend.keep_mask(np, (3,), 0.0).all()


class _FakeCupyArray:
    """Stands in for a CuPy array on machines without CuPy."""


def test_mixed_devices_error_names_both(monkeypatch):
    monkeypatch.setattr(backend.arrays, "is_cupy_array", lambda x: isinstance(x, _FakeCupyArray))
    with pytest.raises(DeviceError, match="'cpu'.*'cuda'"):
        backend.get_array_module(np.zeros(2), _FakeCupyArray())


@pytest.mark.gpu
def test_mixed_devices_in_an_op():
    with pytest.raises(DeviceError, match="'cpu'.*'cuda'"):
        F.add(Tensor(np.zeros(2)), Tensor(np.zeros(2)).to("cuda"))



_PAGE_FAULTS_OF_REUSING = """
import resource
import numpy as np
from tinygrad_nlp import backend

def page_faults_of_reusing(times=20):
    # minor page faults taken by allocating, filling and freeing the same 1 MiB array
    # (below the size NumPy asks huge pages for)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        np.ones(1 << 18, dtype=np.float32)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

off = backend.keep_host_memory(False) and not backend.host_memory_kept()
fresh = page_faults_of_reusing()
on = backend.keep_host_memory(True) and backend.host_memory_kept()
page_faults_of_reusing(times=1)
print(off, fresh, on, page_faults_of_reusing())
"""


@pytest.mark.skipif(not backend.keep_host_memory(), reason="the C library has no mallopt (not glibc)")
def test_kept_host_memory_serves_the_next_allocation_without_page_faults():
    """In a fresh process: in this one, earlier tests leave large free chunks in the heap
    that serve a 1 MiB block without new pages even under glibc's defaults."""
    import subprocess
    import sys
    pages = 20 * (1 << 20) // 4096
    out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_OF_REUSING], capture_output=True, text=True, check=True)
    off, fresh, on, kept = out.stdout.split()
    fresh, kept = int(fresh), int(kept)
    assert off == "True" and on == "True"  # each setting took effect
    assert fresh > pages // 2  # each new block is fresh pages
    assert kept < pages // 20  # the freed block is reused


@pytest.mark.skipif(not backend.keep_host_memory(), reason="the C library has no mallopt (not glibc)")
def test_host_memory_is_left_alone_at_import_and_kept_when_asked_unless_the_environment_says_not_to():
    import os
    import subprocess
    import sys
    code = ("from tinygrad_nlp import backend; at_import = backend.host_memory_kept(); backend.keep_host_memory(); "
            "print(at_import, backend.host_memory_kept())")
    kept = {setting: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=dict(os.environ, TINYGRAD_NLP_KEEP_HOST_MEMORY=setting)).stdout.strip()
            for setting in ("0", "1")}
    assert kept == {"0": "False False", "1": "False True"}


def test_out_of_memory_in_a_forward_names_the_op_shapes_and_free_memory():
    a, b = Tensor(np.ones((1 << 21, 1), np.float32)), Tensor(np.ones((1, 1 << 21), np.float32))
    with pytest.raises(DeviceError) as caught:
        F.matmul(a, b)  # a 16 TiB product
    message = str(caught.value)
    assert "\n" not in message and "out of memory on cpu in MatMul forward" in message
    assert "(2097152, 1), (1, 2097152)" in message and "(2097152, 2097152) float32" in message
    assert "17,592,186,044,416 bytes (16.0 TiB)" in message and " free of " in message


def test_out_of_memory_in_a_backward_names_the_op_and_gradient():
    from tinygrad_nlp.tensor import Function

    class GreedyBackward(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return np.empty((1 << 22, 1 << 22), dtype=np.float64)

    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(DeviceError, match=r"in GreedyBackward backward \(gradient \(3,\)\).*128\.0 TiB"):
        GreedyBackward()(x).sum().backward()


@pytest.mark.gpu
def test_gpu_out_of_memory_names_the_device_and_the_pool():
    a = Tensor(np.ones((1 << 21, 1), np.float32)).to("cuda")
    b = Tensor(np.ones((1, 1 << 21), np.float32)).to("cuda")
    with pytest.raises(DeviceError, match=r"out of memory on cuda:\d+ in MatMul forward .*16\.0 TiB.* free of .*CuPy's pool"):
        F.matmul(a, b)


def test_fused_kernels_are_off_unless_named_and_only_on_the_gpu(monkeypatch):
    assert backend.fused_kernels_from("") == set()
    assert backend.fused_kernels_from("all") == {"layer_norm", "softmax", "dropout", "adam", "bias_activation",
                                                 "embedding_backward"}
    assert backend.fused_kernels_from(" layer_norm, ") == {"layer_norm"}
    known = r"known: \['layer_norm', 'softmax', 'dropout', 'adam', 'bias_activation', 'embedding_backward'\]"
    with pytest.warns(UserWarning, match=r"unknown kernel\(s\) \['softmaxx'\], " + known):
        assert backend.fused_kernels_from("softmaxx,layer_norm") == {"layer_norm"}
    monkeypatch.setattr(backend.kernels, "fused_kernels", {"layer_norm"})
    assert not backend.kernels.kernel_suits("layer_norm", np.ones(3, np.float32))  # NumPy arrays: never
    both = backend.kernels.dispatch("layer_norm", generic=lambda x: "generic", kernel=lambda x: "kernel")
    assert both(np.ones(3, np.float32)) == "generic"
    backend.manual_seed(4)
    first = backend.philox_place(5)
    assert backend.philox_place(5)[2] == first[2] + 1  # the next draw
    backend.manual_seed(4)
    assert backend.philox_place(5) == first and first[2:] == (0, 0)
    with backend.examples_from(3, 9):
        assert backend.philox_place(5)[1:] == (first[1], 9, 15)  # draw 9, from element 3 * 5


def test_numpy_erf_is_within_three_ulp_of_the_c_library_over_the_whole_range():
    import math
    x = np.concatenate([np.linspace(-30, 30, 60001), np.geomspace(1e-300, 30, 20000), -np.geomspace(1e-300, 30, 20000),
                        [0.0, -0.0, 0.46875, -0.46875, 4.0, np.nextafter(4.0, 5.0), 26.6, 27.5, np.inf, -np.inf]])
    expected = np.array([math.erf(v) for v in x])
    got = backend.erf(x)
    ulps = np.abs(got - expected) / np.spacing(np.maximum(np.abs(expected), np.finfo(np.float64).tiny))
    assert ulps.max() <= 3, (ulps.max(), x[ulps.argmax()])
    assert np.isnan(backend.erf(np.array([np.nan]))[0]) and np.signbit(backend.erf(np.array([-0.0]))[0])
    x32 = np.concatenate([np.linspace(-6, 6, 100001, dtype=np.float32), np.float32([np.inf, -np.inf, 1e-30])])
    got32 = backend.erf(x32)
    expected32 = np.array([math.erf(v) for v in x32.astype(np.float64)])
    assert got32.dtype == np.float32
    ulps32 = np.abs(got32 - expected32) / np.spacing(np.abs(expected32).astype(np.float32))
    assert ulps32.max() <= 4, (ulps32.max(), x32[ulps32.argmax()])


def test_numpy_erf_agrees_with_scipy_where_scipy_is_installed():
    special = pytest.importorskip("scipy.special")
    x = np.random.default_rng(0).standard_normal(100_000) * 4
    np.testing.assert_allclose(backend.erf(x), special.erf(x), rtol=1e-15, atol=1e-300)  # a few ulp: Cephes differs


def test_normal_cdf_in_float32_is_within_3e_7_of_phi_and_its_density_within_1e_7():
    import math
    x = np.concatenate([np.linspace(-15, 10, 400001, dtype=np.float32), np.float32([0.0, -0.0, 1e-30, -1e-30, 40, -40]),
                        np.random.default_rng(0).standard_normal((7, 333)).astype(np.float32).ravel()])  # odd blocks
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    cdf, density = backend.normal_cdf(x, density=True)
    assert cdf.dtype == density.dtype == np.float32 and cdf.shape == x.shape
    assert np.abs(cdf - exact).max() <= 3e-7, x[np.abs(cdf - exact).argmax()]
    assert cdf.min() >= 0 and cdf.max() <= 1 and np.all(np.diff(cdf[:400001]) >= -3e-7)
    exact_density = np.exp(-0.5 * x.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
    assert np.abs(density - exact_density).max() <= 1e-7
    edges, none = backend.normal_cdf(np.float32([np.inf, -np.inf, np.nan]).reshape(3, 1))
    assert none is None and edges.shape == (3, 1) and edges[0, 0] == 1 and edges[1, 0] == 0 and np.isnan(edges[2, 0])


def test_normal_cdf_in_float64_goes_through_erf():
    import math
    x = np.linspace(-8, 8, 1601)
    cdf, density = backend.normal_cdf(x, density=True)
    np.testing.assert_allclose(cdf, [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x], rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(density, np.exp(-x * x / 2) / math.sqrt(2 * math.pi), rtol=1e-15)


def test_a_kernel_dispatch_names_only_kernels_the_switch_knows():
    with pytest.raises(ValueError, match="unknown kernel 'softmaxx'"):
        backend.kernels.dispatch("softmaxx", generic=lambda x: x, kernel=lambda x: x)


def test_in_parts_splits_long_work_across_the_cores_unless_replicas_or_other_processes_hold_them(monkeypatch):
    from tinygrad_nlp.backend import threads
    monkeypatch.setattr(threads, "_cores", lambda: 3)
    seen = []
    threads.split_across_cores(10, lambda start, stop: seen.append((start, stop)), least=3)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)]
    seen.clear()
    threads.split_across_cores(5, lambda start, stop: seen.append((start, stop)), least=3)  # too short for two parts
    assert seen == [(0, 5)]
    seen.clear()
    monkeypatch.setattr(threads, "_shared_with", 3)  # three processes of one run on this machine
    threads.split_across_cores(10, lambda start, stop: seen.append((start, stop)), least=3)
    assert seen == [(0, 10)] and threads.pass_threads() == 1
    monkeypatch.setattr(threads, "_shared_with", 1)
    monkeypatch.setattr(threads, "_replicas_running", 1)  # thread replicas hold the cores
    assert threads.pass_threads() == 1


def test_in_parts_waits_for_every_part_and_raises_a_parts_error(monkeypatch):
    from tinygrad_nlp.backend import threads
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    done = []

    def work(start, stop):
        if start:
            raise ValueError(f"part at {start}")
        done.append(start)
    with pytest.raises(ValueError, match="part at 4"):
        threads.split_across_cores(8, work, least=4)
    assert done == [0]
