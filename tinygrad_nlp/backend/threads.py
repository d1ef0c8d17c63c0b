"""Threads on the CPU: how many replicas to run, BLAS kept to one thread in each, and a
long elementwise update split across the cores.

NumPy runs an elementwise pass on one core, so on a CPU with several the training step
can run as several replicas at once, one per thread (``nn.DataParallel``); each thread
then multiplies with a BLAS of one thread, or the threads' BLAS workers would fight for
the same cores. Outside the replicas, the optimizer's update of every parameter runs in
parts, one per core, at once (``split_across_cores``): NumPy releases the interpreter lock inside
its loops. A GPU runs each op on all of its cores already.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ..errors import MissingDependencyError
from .arrays import CACHE_BLOCK_BYTES, is_cupy_array, rows_per_block

_replicas_running = 0  # > 0 while thread replicas hold every core (one_blas_thread)
_shared_with = 1  # the processes of the run on this machine (share_cores)
_PART_ELEMENTS = 1 << 17  # the least per part: enough work that a thread's hand-off is small beside it


def _cores() -> int:
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(cores))


def default_threads(device: str, processes: int = 1) -> int:
    """How many thread replicas to run unless told: on the CPU the cores this process may
    run on, shared among the ``processes`` of the run on this machine (one when
    ``threadpoolctl``, which keeps BLAS to one thread per replica, is not installed); on
    a GPU one."""
    if device != "cpu" or not threadpoolctl_installed():
        return 1
    return max(1, _cores() // max(1, int(processes)))


def share_cores(processes: int) -> None:
    """This machine's cores are shared by ``processes`` processes of one run (an MPI run
    says so when it starts): ``split_across_cores`` splits across this process's share only."""
    global _shared_with
    _shared_with = max(1, int(processes))


def pass_threads() -> int:
    """How many threads ``split_across_cores`` splits a long elementwise computation across: this
    process's share of the cores, or 1 while thread replicas hold them."""
    return 1 if _replicas_running else max(1, _cores() // _shared_with)


@functools.lru_cache(maxsize=1)
def _part_pool():
    return ThreadPoolExecutor(max(1, _cores() - 1), thread_name_prefix="tinygrad_nlp-part")


def split_across_cores(n: int, work, least: int = _PART_ELEMENTS) -> None:
    """``work(start, stop)`` over consecutive parts of range(n) that cover it, one part per
    thread of ``pass_threads()`` (each of at least ``least`` elements), all at once, the
    calling thread taking the first; returns when every part is done, raising the first
    part's error. For elementwise work the result is that of ``work(0, n)``, bit for bit."""
    parts = min(pass_threads(), n // max(1, least))
    if parts < 2:
        work(0, n)
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_part_pool().submit(work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        work(bounds[0], bounds[1])
    finally:
        wait(futures)
    for future in futures:
        future.result()


@functools.lru_cache(maxsize=1)
def threadpoolctl_installed() -> bool:
    return importlib.util.find_spec("threadpoolctl") is not None


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def require_threadpoolctl() -> None:
    """Raise MissingDependencyError unless ``threadpoolctl`` is installed."""
    if not threadpoolctl_installed():
        raise MissingDependencyError("running replicas in threads needs threadpoolctl, which keeps BLAS to one "
                                     "thread per replica: pip install threadpoolctl (or use threads=1)")


def update_in_cache_blocks(arrays, update, whole_scratch, bytes_per_element: int) -> None:
    """``update(*pieces, work)`` over matching flat pieces of same-size arrays, ``work`` a
    scratch array of a piece's size. On the CPU the pieces hold ``bytes_per_element`` per
    element in a cache-sized block (an optimizer's passes then run in the cache instead of
    memory) and are split across the cores (``split_across_cores``), each part with a scratch of its
    own; on the GPU, or when an array is not contiguous, the arrays are one piece, with
    ``whole_scratch(shape)``."""
    if is_cupy_array(arrays[0]) or not all(a.flags.c_contiguous for a in arrays):
        update(*arrays, whole_scratch(arrays[0].shape))
        return
    n = arrays[0].size
    # in parts, pieces four times as long keep the threads from waiting on each other's
    # NumPy calls (benchmarks/RESULTS.md measures it)
    longer = 4 if pass_threads() > 1 else 1
    step = rows_per_block(np, n, bytes_per_element, CACHE_BLOCK_BYTES * longer)
    flat = [a.reshape(-1) for a in arrays]

    def part(start, stop):
        work = np.empty(min(step, stop - start), dtype=arrays[0].dtype)
        for begin in range(start, stop, step):
            end = min(begin + step, stop)
            update(*(a[begin:end] for a in flat), work[: end - begin])
    split_across_cores(n, part)


@contextlib.contextmanager
def one_blas_thread():
    """A context within which thread replicas hold the cores: NumPy's BLAS multiplies on
    the calling thread only (for every thread: BLAS has one thread count per process)
    and ``split_across_cores`` does not split. Needs ``threadpoolctl``."""
    global _replicas_running
    require_threadpoolctl()
    with _blas_controller().limit(limits=1, user_api="blas"):
        _replicas_running += 1
        try:
            yield
        finally:
            _replicas_running -= 1


__all__ = ["default_threads", "threadpoolctl_installed", "require_threadpoolctl", "one_blas_thread", "share_cores",
           "pass_threads", "split_across_cores", "update_in_cache_blocks"]
