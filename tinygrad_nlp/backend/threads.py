"""Threads on the CPU: how many replicas to run, and BLAS kept to one thread in each.

NumPy runs an elementwise pass on one core, so on a CPU with several the training step
can run as several replicas at once, one per thread (``nn.DataParallel``); each thread
then multiplies with a BLAS of one thread, or the threads' BLAS workers would fight for
the same cores. A GPU runs each op on all of its cores already.
"""
from __future__ import annotations

import functools
import importlib.util
import os

from ..errors import MissingDependencyError


def default_threads(device: str, processes: int = 1) -> int:
    """How many thread replicas to run unless told: on the CPU the cores this process may
    run on, shared among the ``processes`` of the run on this machine (one when
    ``threadpoolctl``, which keeps BLAS to one thread per replica, is not installed); on
    a GPU one."""
    if device != "cpu" or not threadpoolctl_installed():
        return 1
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(cores) // max(1, int(processes)))


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


def one_blas_thread():
    """A context within which NumPy's BLAS multiplies on the calling thread only (for
    every thread: BLAS has one thread count per process). Needs ``threadpoolctl``."""
    require_threadpoolctl()
    return _blas_controller().limit(limits=1, user_api="blas")


__all__ = ["default_threads", "threadpoolctl_installed", "require_threadpoolctl", "one_blas_thread"]
