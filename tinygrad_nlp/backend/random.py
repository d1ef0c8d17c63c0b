"""Random numbers: one seeded generator per backend, Philox streams for the kernels,
per-thread generators for thread replicas, and their state for exact resumes.

``manual_seed`` seeds them all together. ``get_rng_state`` / ``set_rng_state`` save and
restore everything a training step draws from: the CPU generator, the Philox key and
counter of the fused kernels, and the GPU generator.

CuPy's ``RandomState`` (cuRAND) cannot report its state, so the GPU generator is made
restorable instead: each ``get_rng_state`` starts it afresh from a seed derived from the
run's seed and a count of such restarts, and the state records the count. A resumed run
restarts it from the same seed at the same step, so it draws what the uninterrupted run
drew after saving.
"""
from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

_rng_cpu = np.random.default_rng()
_rng_cuda = None
_seed = None
_cuda_restarts = 0  # how many times get_rng_state restarted the GPU generator since manual_seed
_philox_key = tuple(int(w) for w in np.random.SeedSequence().generate_state(2))
_philox_offset = 0


def manual_seed(seed: int) -> None:
    """Seed parameter initialisation and dropout on both backends."""
    global _rng_cpu, _rng_cuda, _seed, _cuda_restarts, _philox_key, _philox_offset
    _seed = int(seed)
    _rng_cpu = np.random.default_rng(_seed)
    _rng_cuda, _cuda_restarts = None, 0
    _philox_key = tuple(int(w) for w in np.random.SeedSequence(_seed).generate_state(2))
    _philox_offset = 0


def split_gpu_streams(rank: int) -> None:
    """Give this process (MPI rank ``rank``) GPU draws of its own: the GPU generator's seed
    and the Philox key depend on the rank from here on. (CPU draws of data-parallel
    replicas come from per-replica generators instead, ``thread_generator``.)"""
    global _seed, _rng_cuda, _philox_key
    base = 0 if _seed is None else _seed
    _seed = int(np.random.SeedSequence([base, int(rank)]).generate_state(1)[0])
    _rng_cuda = None
    _philox_key = tuple(int(w) for w in np.random.SeedSequence([base, int(rank), 1]).generate_state(2))


def philox_stream(n: int) -> tuple:
    """(key word 0, key word 1, first counter) for a kernel that draws ``n`` numbers
    from the counter-based generator of kernels/cuda/philox.cuh, four per counter: the key comes
    from the seed, and the counters each call gets are new ones, so every call draws
    fresh numbers, the same on every run from one seed, with no device round trip."""
    global _philox_offset
    offset = _philox_offset
    _philox_offset += -(-int(n) // 4)
    return _philox_key + (offset,)


_thread = threading.local()  # a CPU generator of this thread's own (thread replicas)


@contextlib.contextmanager
def thread_generator(generator: np.random.Generator):
    """Within this block, on this thread only, CPU draws (dropout masks, ``rng(np)``)
    come from ``generator`` instead of the seeded one, so threads that draw at the same
    time each draw a stream of their own, the same on every run."""
    previous, _thread.cpu_generator = getattr(_thread, "cpu_generator", None), generator
    try:
        yield generator
    finally:
        _thread.cpu_generator = previous


def _cuda_seed() -> int | None:
    if _seed is None:
        return None
    return int(np.random.SeedSequence([_seed, _cuda_restarts]).generate_state(1)[0])


def rng(xp=np):
    """The seeded generator of a backend: a NumPy ``Generator`` (this thread's own
    inside ``thread_generator``) or a CuPy ``RandomState``."""
    global _rng_cuda
    if xp is np:
        return getattr(_thread, "cpu_generator", None) or _rng_cpu
    if _rng_cuda is None:
        _rng_cuda = xp.random.RandomState(_cuda_seed())
    return _rng_cuda


def get_rng_state() -> dict:
    """Everything the generators need to continue exactly (a plain dict, for checkpoints):
    the CPU generator's state, the Philox key and counter and, where a GPU generator has
    drawn, the GPU generator started afresh (see the module docstring)."""
    global _rng_cuda, _cuda_restarts
    if _rng_cuda is not None:
        _cuda_restarts += 1
        _rng_cuda = None  # the next GPU draw starts it from the seed of this restart
    return {"cpu": _rng_cpu.bit_generator.state, "philox_key": list(_philox_key), "philox_offset": _philox_offset,
            "seed": _seed, "cuda_restarts": _cuda_restarts}


def set_rng_state(state: dict) -> None:
    """Continue from a state ``get_rng_state`` returned (also the CPU generator's bare
    state, as older checkpoints hold)."""
    global _rng_cuda, _seed, _cuda_restarts, _philox_key, _philox_offset
    if "cpu" not in state:  # the CPU generator's own state alone
        _rng_cpu.bit_generator.state = state
        return
    _rng_cpu.bit_generator.state = state["cpu"]
    _philox_key, _philox_offset = tuple(int(w) for w in state["philox_key"]), int(state["philox_offset"])
    _seed = None if state["seed"] is None else int(state["seed"])
    _cuda_restarts, _rng_cuda = int(state["cuda_restarts"]), None


def keep_mask(xp, shape, p: float):
    """A boolean mask, True (kept) with probability 1 - p, from the seeded generator.

    On the CPU it compares 16-bit random numbers with round(p * 2^16), so the drop rate
    is p to within 2^-17; the 16-bit numbers are the four quarters of the generator's
    raw 64-bit outputs (faster than drawing floats). On the GPU it compares
    uniform floats with p."""
    if xp is not np:
        return rng(xp).random_sample(shape, dtype=np.float32) >= p
    threshold = int(round(p * 65536))
    if threshold >= 65536:
        return np.zeros(shape, dtype=bool)
    n = math.prod(shape)
    raw = rng(np).bit_generator.random_raw(-(-n // 4))
    return (raw.view(np.uint16)[:n] >= threshold).reshape(shape)


__all__ = ["manual_seed", "split_gpu_streams", "philox_stream", "thread_generator", "rng", "get_rng_state",
           "set_rng_state", "keep_mask"]
