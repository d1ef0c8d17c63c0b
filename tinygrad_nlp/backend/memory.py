"""Memory: the host allocator tuned for training steps, CuPy's pool, and out-of-memory
errors that say what was asked for and what is free.
"""
from __future__ import annotations

import ctypes
import math
import os

import numpy as np

from ..errors import DeviceError
from . import arrays


def _bytes(n: int) -> str:
    """A byte count for people: 1.5 GiB, 312.0 MiB."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def out_of_memory(error: MemoryError, where: str) -> DeviceError:
    """A one-line ``DeviceError`` for a failed allocation (CuPy's ``OutOfMemoryError`` or
    NumPy's ``MemoryError``) while running ``where`` (an op and its input shapes): the
    bytes asked for and the device's free memory, and on the GPU what CuPy's pool holds."""
    asked = getattr(error, "_size", None)  # CuPy: the bytes of the failed allocation
    if asked is None:  # NumPy: the shape and dtype of the array it could not make
        shape, dtype = getattr(error, "shape", None), getattr(error, "dtype", None)
        asked = None if shape is None else math.prod(shape) * np.dtype(dtype).itemsize
        where += "" if shape is None else f", allocating {tuple(shape)} {np.dtype(dtype).name}"
    asked_text = "an allocation" if asked is None else f"{asked:,} bytes ({_bytes(asked)})"
    cupy = arrays.cupy_module()
    if cupy is not None and isinstance(error, cupy.cuda.memory.OutOfMemoryError):
        free, total = cupy.cuda.runtime.memGetInfo()
        pool = cupy.get_default_memory_pool()
        held = f"; CuPy's pool holds {_bytes(pool.total_bytes())}, {_bytes(pool.free_bytes())} of it unused"
        device = f"cuda:{cupy.cuda.Device().id}"
    else:
        pages, page = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        free, total, held, device = pages * page, os.sysconf("SC_PHYS_PAGES") * page, "", "cpu"
    return DeviceError(f"out of memory on {device} in {where}: asked for {asked_text} with {_bytes(free)} free "
                       f"of {_bytes(total)}{held}; use a smaller batch or model")


# glibc's malloc gives every block above its mmap threshold fresh pages from the kernel
# and returns them when the block is freed (and trims the heap's free top likewise), so
# a training step that allocates and frees the same few hundred MiB of activations every
# step pays a page fault per 4 KiB touched: about a quarter of the MLM tutorial's step on
# 2 cores (``python benchmarks/page_faults.py``, benchmarks/RESULTS.md). CuPy's memory pool keeps freed
# GPU blocks for reuse; this keeps freed host blocks in the process in the same way.
# A thread's own arena (nn.DataParallel's replicas) is a chain of 64 MiB heaps, and
# glibc unmaps a heap that falls wholly free whatever the trim threshold, unless the
# top pad is larger than what it would give back (thousands of faults a step without).
# The mmap threshold stops at 32 MiB, so a block above it (a large vocabulary's weight
# gradient or logits, 50 to 120 MiB for Llama's 49,152 x 576) would still be mapped and
# unmapped every step: no block is mapped on its own (M_MMAP_MAX 0), each comes from the
# kept heap. (Where the heap cannot grow, glibc still maps memory for it.)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4  # mallopt parameters (malloc.h)
_GLIBC_MAX_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit machines
_GLIBC_DEFAULT_THRESHOLD = 128 << 10
_GLIBC_DEFAULT_MMAP_MAX = 65536
_KEPT_TOP_PAD, _GLIBC_DEFAULT_TOP_PAD = 64 << 20, 128 << 10


def keep_host_memory(keep: bool | None = None) -> bool:
    """Let the C allocator keep freed host memory for reuse (``keep=True``) instead of
    returning it to the kernel, or restore glibc's defaults (``keep=False``). Training
    code calls it once before its loop; nothing calls it at import.

    Every block comes from the heap (none is mapped on its own) and a freed heap is not
    trimmed, so memory freed by one step serves the next without page faults; the process's resident size
    then stays at its peak, as with CuPy's pool on the GPU. ``keep=None`` keeps it unless
    the environment variable ``TINYGRAD_NLP_KEEP_HOST_MEMORY`` is ``0``. Returns
    whether the setting took effect: False where the C library has no ``mallopt``
    (macOS, Windows), which changes nothing but speed."""
    if keep is None:
        keep = os.environ.get("TINYGRAD_NLP_KEEP_HOST_MEMORY", "1") != "0"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    if keep:
        settings = ((_M_MMAP_THRESHOLD, _GLIBC_MAX_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, 2 ** 31 - 1),
                    (_M_TOP_PAD, _KEPT_TOP_PAD), (_M_MMAP_MAX, 0))
    else:
        settings = ((_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD), (_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD),
                    (_M_TOP_PAD, _GLIBC_DEFAULT_TOP_PAD), (_M_MMAP_MAX, _GLIBC_DEFAULT_MMAP_MAX))
    global _kept
    took_effect = all([mallopt(parameter, value) == 1 for parameter, value in settings])
    _kept = keep and took_effect
    return took_effect


_kept = False


def host_memory_kept() -> bool:
    """Whether ``keep_host_memory`` is in effect."""
    return _kept


def release_cached_gpu_memory() -> int:
    """Give the GPU blocks CuPy's pool holds unused back to the driver (for another
    process, or a larger model); returns the bytes released (0 without CuPy)."""
    cupy = arrays.cupy_module()
    if cupy is None:
        return 0
    pool = cupy.get_default_memory_pool()
    unused = pool.free_bytes()
    pool.free_all_blocks()
    return unused


__all__ = ["keep_host_memory", "host_memory_kept", "out_of_memory", "release_cached_gpu_memory"]
