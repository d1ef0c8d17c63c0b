"""The one place that knows NumPy from CuPy.

Devices are named ``"cpu"`` (NumPy) and ``"cuda"`` (CuPy). Everything else in the
package asks this module for the array module of its inputs (``get_array_module``),
moves arrays between devices (``to_device``) and draws random numbers (``rng``).

Where CPU and GPU need different code, the difference has a name here:
``keep_host_memory`` (the CPU's counterpart of CuPy's memory pool),
``rows_per_block`` (cache blocking on the CPU, one block on the GPU), ``keep_mask``
(dropout draws), ``scatter_add`` (repeated-index accumulation), ``per_device`` (an op's
CPU and GPU versions of one function, chosen by its arrays), ``load_kernel`` (an op's
CUDA source file, compiled by CuPy) and ``use_fused_kernel`` (whether it runs). Ops never ask which array module they got.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
import warnings

import numpy as np

from .errors import DeviceError, MissingDependencyError

try:  # CuPy is optional: the CPU backend never needs it.
    import cupy as _cupy
except Exception:  # ImportError, or a CuPy wheel that cannot find its CUDA libraries
    _cupy = None

CUPY_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install 'tinygrad_nlp[gpu]'` "
    "(cupy-cuda12x) or `pip install cupy-cuda13x`"
)

DEVICES = ("cpu", "cuda")


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cuda_unavailable_reason() -> str:
    """One line saying why ``"cuda"`` cannot be used here ('' when it can)."""
    if _cupy is None:
        return f"CuPy is not installed; {CUPY_INSTALL_HINT}"
    if not cuda_available():
        return "CuPy is installed but sees no CUDA GPU (check the driver and CUDA_VISIBLE_DEVICES)"
    return ""


def require_cuda() -> None:
    reason = cuda_unavailable_reason()
    if reason:
        raise DeviceError(f"device 'cuda' requested but {reason}")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "cuda":
        require_cuda()
    return device


def is_cupy_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def device_of(x) -> str:
    return "cuda" if is_cupy_array(x) else "cpu"


def get_array_module(*arrays):
    """NumPy or CuPy, whichever holds the given arrays; an error if they are mixed.

    Non-array arguments (Python scalars, None) are ignored.
    """
    found = None
    for a in arrays:
        if isinstance(a, np.ndarray) or isinstance(a, np.generic):
            kind = "cpu"
        elif is_cupy_array(a):
            kind = "cuda"
        else:
            continue
        if found is None:
            found = kind
        elif found != kind:
            raise DeviceError(
                "arrays on different devices in one op: 'cpu' (NumPy) and 'cuda' (CuPy); "
                "move them with .to(device) first"
            )
    return _cupy if found == "cuda" else np


def xp_for(device: str):
    return _cupy if check_device(device) == "cuda" else np


def to_device(x, device: str):
    """Copy an array to ``device`` (a no-op when it is already there)."""
    check_device(device)
    if device == "cuda":
        return x if is_cupy_array(x) else _cupy.asarray(x)
    return _cupy.asnumpy(x) if is_cupy_array(x) else np.asarray(x)


def asnumpy(x) -> np.ndarray:
    return to_device(x, "cpu")


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
    if _cupy is not None and isinstance(error, _cupy.cuda.memory.OutOfMemoryError):
        free, total = _cupy.cuda.runtime.memGetInfo()
        pool = _cupy.get_default_memory_pool()
        held = f"; CuPy's pool holds {_bytes(pool.total_bytes())}, {_bytes(pool.free_bytes())} of it unused"
        device = f"cuda:{_cupy.cuda.Device().id}"
    else:
        pages, page = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        free, total, held, device = pages * page, os.sysconf("SC_PHYS_PAGES") * page, "", "cpu"
    return DeviceError(f"out of memory on {device} in {where}: asked for {asked_text} with {_bytes(free)} free "
                       f"of {_bytes(total)}{held}; use a smaller batch or model")


# ---------------------------------------------------------------------------
# Random numbers: one generator per backend, seeded together by manual_seed.
# ---------------------------------------------------------------------------
_rng_cpu = np.random.default_rng()
_rng_cuda = None
_seed = None


_philox_key = tuple(int(w) for w in np.random.SeedSequence().generate_state(2))
_philox_offset = 0


def manual_seed(seed: int) -> None:
    """Seed parameter initialisation and dropout on both backends."""
    global _rng_cpu, _rng_cuda, _seed, _philox_key, _philox_offset
    _seed = int(seed)
    _rng_cpu = np.random.default_rng(_seed)
    _rng_cuda = _cupy.random.RandomState(_seed) if cuda_available() else None
    _philox_key = tuple(int(w) for w in np.random.SeedSequence(_seed).generate_state(2))
    _philox_offset = 0


def philox_stream(n: int) -> tuple:
    """(key word 0, key word 1, first counter) for a kernel that draws ``n`` numbers
    from the counter-based generator of ops/philox.cuh, four per counter: the key comes
    from the seed, and the counters each call gets are new ones, so every call draws
    fresh numbers, the same on every run from one seed, with no device round trip."""
    global _philox_offset
    offset = _philox_offset
    _philox_offset += -(-int(n) // 4)
    return _philox_key + (offset,)


_thread = threading.local()  # a CPU generator of this thread's own (nn.DataParallel's replicas)


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


def rng(xp=np):
    """The seeded generator of a backend: a NumPy ``Generator`` (this thread's own
    inside ``thread_generator``) or a CuPy ``RandomState``."""
    global _rng_cuda
    if xp is np:
        return getattr(_thread, "cpu_generator", None) or _rng_cpu
    if _rng_cuda is None:
        _rng_cuda = _cupy.random.RandomState(_seed)
    return _rng_cuda


def uniform(xp, shape, dtype):
    """Uniform [0, 1) samples of ``dtype`` on the backend ``xp``."""
    gen = rng(xp)
    if xp is np:
        return gen.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return gen.random_sample(shape, dtype=dtype)


def get_rng_state():
    """The CPU generator's state (a plain dict), for checkpoints that resume exactly."""
    return _rng_cpu.bit_generator.state


def set_rng_state(state) -> None:
    _rng_cpu.bit_generator.state = state




def keep_mask(xp, shape, p: float):
    """A boolean mask, True (kept) with probability 1 - p, from the seeded generator.

    On the CPU it compares 16-bit random numbers with round(p * 2^16), so the drop rate
    is p to within 2^-17; the 16-bit numbers are the four quarters of the generator's
    raw 64-bit outputs (five times faster than drawing floats). On the GPU it compares
    uniform floats with p."""
    if xp is not np:
        return rng(xp).random_sample(shape, dtype=np.float32) >= p
    threshold = int(round(p * 65536))
    if threshold >= 65536:
        return np.zeros(shape, dtype=bool)
    n = math.prod(shape)
    raw = rng(np).bit_generator.random_raw(-(-n // 4))
    return (raw.view(np.uint16)[:n] >= threshold).reshape(shape)


# ---------------------------------------------------------------------------
# Where CPU and GPU code differ.
# ---------------------------------------------------------------------------
# glibc's malloc gives every block above its mmap threshold fresh pages from the kernel
# and returns them when the block is freed (and trims the heap's free top likewise), so
# a training step that allocates and frees the same few hundred MiB of activations every
# step pays a page fault per 4 KiB touched: 57,000 faults and about a quarter of the MLM
# tutorial's step on 2 cores (benchmarks/RESULTS.md). CuPy's memory pool keeps freed
# GPU blocks for reuse; this keeps freed host blocks in the process in the same way.
# A thread's own arena (nn.DataParallel's replicas) is a chain of 64 MiB heaps, and
# glibc unmaps a heap that falls wholly free whatever the trim threshold, unless the
# top pad is larger than what it would give back: 5,500 faults per MLM step in 2 threads.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters (malloc.h)
_GLIBC_MAX_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit machines
_GLIBC_DEFAULT_THRESHOLD = 128 << 10
_KEPT_TOP_PAD, _GLIBC_DEFAULT_TOP_PAD = 64 << 20, 128 << 10


def keep_host_memory(keep: bool = True) -> bool:
    """Let the C allocator keep freed host memory for reuse (``keep=True``, the default
    at import) instead of returning it to the kernel, or restore glibc's defaults.

    Blocks up to 32 MiB come from the heap and a freed heap is not trimmed, so memory
    freed by one step serves the next without page faults; the process's resident size
    then stays at its peak, as with CuPy's pool on the GPU. Set the environment variable
    ``TINYGRAD_NLP_KEEP_HOST_MEMORY=0`` to leave the allocator alone at import. Returns
    whether the setting took effect: False where the C library has no ``mallopt``
    (macOS, Windows), which changes nothing but speed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    if keep:
        settings = ((_M_MMAP_THRESHOLD, _GLIBC_MAX_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, 2 ** 31 - 1),
                    (_M_TOP_PAD, _KEPT_TOP_PAD))
    else:
        settings = ((_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD), (_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD),
                    (_M_TOP_PAD, _GLIBC_DEFAULT_TOP_PAD))
    global host_memory_kept
    took_effect = all([mallopt(parameter, value) == 1 for parameter, value in settings])
    host_memory_kept = keep and took_effect
    return took_effect


host_memory_kept = False  # whether keep_host_memory(True) is in effect
if os.environ.get("TINYGRAD_NLP_KEEP_HOST_MEMORY", "1") != "0":
    keep_host_memory()


# Several elementwise passes over a block of this many bytes run in the L2 cache of the
# CPU instead of memory (softmax rows: 33 -> 15 ms on the MLM head; attention scores;
# Adam's moments). A GPU runs each pass as one kernel over everything instead.
CACHE_BLOCK_BYTES = 1 << 18


def rows_per_block(xp, n_rows: int, row_bytes: int, block_bytes: int | None = None) -> int:
    """How many rows of ``row_bytes`` each to process at a time: a block of
    ``block_bytes`` (default ``CACHE_BLOCK_BYTES``, a cache-sized one) on the CPU, all
    ``n_rows`` at once on the GPU (at least 1)."""
    if xp is not np:
        return max(1, n_rows)
    return max(1, (block_bytes or CACHE_BLOCK_BYTES) // max(1, row_bytes))


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulating (``np.add.at`` on
    the CPU, ``cupyx.scatter_add`` on the GPU)."""
    if is_cupy_array(target):
        import cupyx
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


# Threads. NumPy runs an elementwise pass on one core, so on a CPU with several the
# training step runs as several replicas at once, one per thread (nn.DataParallel); each
# thread then multiplies with a BLAS of one thread, or the threads' BLAS workers would
# fight for the same cores. A GPU runs each op on all of its cores already.
def default_threads(device: str) -> int:
    """How many threads ``nn.DataParallel`` uses unless told: on the CPU one per core
    this process may run on (one when ``threadpoolctl``, which keeps BLAS to one thread
    per replica, is not installed); on a GPU one."""
    if device != "cpu" or not _threadpoolctl_installed():
        return 1
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(cores))


@functools.lru_cache(maxsize=1)
def _threadpoolctl_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("threadpoolctl") is not None


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def require_threadpoolctl() -> None:
    """Raise MissingDependencyError unless ``threadpoolctl`` is installed."""
    if not _threadpoolctl_installed():
        raise MissingDependencyError("running replicas in threads needs threadpoolctl, which keeps BLAS to one "
                                     "thread per replica: pip install threadpoolctl (or use threads=1)")


def one_blas_thread():
    """A context within which NumPy's BLAS multiplies on the calling thread only (for
    every thread: BLAS has one thread count per process). Needs ``threadpoolctl``."""
    require_threadpoolctl()
    return _blas_controller().limit(limits=1, user_api="blas")


def erf(x):
    """The error function, elementwise, to the precision of x's dtype: CuPy's on the
    GPU; SciPy's on the CPU when SciPy is installed, else the C library's ``math.erf``
    element by element (exact, but about 50 times slower)."""
    if is_cupy_array(x):
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    try:
        import scipy.special
    except ImportError:
        return _erf_elementwise(x).astype(x.dtype, copy=False)
    return scipy.special.erf(x)


_erf_elementwise = np.frompyfunc(math.erf, 1, 1)


# -- NCCL (GPU collectives for tinygrad_nlp.distributed) ----------------------------------
def use_gpu(index: int) -> None:
    """Make GPU ``index`` (of those visible, modulo their count) this process's device."""
    require_cuda()
    _cupy.cuda.Device(index % _cupy.cuda.runtime.getDeviceCount()).use()


def nccl_unique_id():
    """A new NCCL unique id (rank 0 makes it and shares it over MPI)."""
    require_cuda()
    from cupy.cuda import nccl
    return nccl.get_unique_id()


def nccl_communicator(world_size: int, unique_id, rank: int):
    require_cuda()
    from cupy.cuda import nccl
    return nccl.NcclCommunicator(world_size, unique_id, rank)


def _nccl_type(array):
    from cupy.cuda import nccl
    return {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "float16": nccl.NCCL_FLOAT16}[array.dtype.name]


def nccl_all_reduce(communicator, array) -> None:
    """Sum ``array`` (contiguous, on this process's GPU) over all ranks, in place."""
    from cupy.cuda import nccl
    stream = _cupy.cuda.get_current_stream().ptr
    communicator.allReduce(array.data.ptr, array.data.ptr, array.size, _nccl_type(array), nccl.NCCL_SUM, stream)


def nccl_broadcast(communicator, array, root: int = 0) -> None:
    """Every rank's ``array`` becomes rank ``root``'s, in place."""
    stream = _cupy.cuda.get_current_stream().ptr
    communicator.bcast(array.data.ptr, array.size, _nccl_type(array), root, stream)


def per_device(cpu, cuda):
    """One function from a CPU and a GPU version of it: each call runs the version for
    the device of its array arguments (the first positional arguments that are arrays)."""
    @functools.wraps(cpu)
    def dispatch(*args, **kwargs):
        return (cuda if get_array_module(*args) is not np else cpu)(*args, **kwargs)
    return dispatch


# A fused CUDA kernel beside an op runs only when switched on by name: each is written and
# compiled in CI (tests/test_kernels.py) but becomes a default only after the `gpu` tests
# have run it against CuPy's generic array code on a real GPU. None has been yet, so the
# set starts empty; TINYGRAD_NLP_FUSED_KERNELS=layer_norm,dropout (names, comma-separated, or
# "all") switches kernels on, as benchmarks/gpu_report.py does to test and time them.
FUSED_KERNEL_NAMES = ("layer_norm", "softmax", "dropout", "adam", "bias_activation")


def fused_kernels_from(setting: str) -> set:
    """The kernel names a ``TINYGRAD_NLP_FUSED_KERNELS`` value switches on (a warning
    names any it does not know)."""
    if setting.strip() == "all":
        return set(FUSED_KERNEL_NAMES)
    names = {name.strip() for name in setting.split(",") if name.strip()}
    if names - set(FUSED_KERNEL_NAMES):
        warnings.warn(f"TINYGRAD_NLP_FUSED_KERNELS: unknown kernel(s) {sorted(names - set(FUSED_KERNEL_NAMES))}, "
                      f"known: {list(FUSED_KERNEL_NAMES)} or 'all'", stacklevel=2)
    return names & set(FUSED_KERNEL_NAMES)


fused_kernels = fused_kernels_from(os.environ.get("TINYGRAD_NLP_FUSED_KERNELS", ""))


def use_fused_kernel(name: str, *arrays) -> bool:
    """Whether an op should run its fused kernel ``name`` on ``arrays``: the kernel is
    switched on (``fused_kernels``) and the arrays are CuPy arrays of one float dtype."""
    if name not in fused_kernels or not all(is_cupy_array(a) for a in arrays):
        return False
    return len({a.dtype for a in arrays}) == 1 and arrays[0].dtype in (np.float32, np.float64)


@functools.cache
def load_kernel(source_path: str, name: str):
    """The CUDA function ``name`` (an ``extern "C" __global__`` function) of the source
    file ``source_path``, compiled once by CuPy (NVRTC) and cached."""
    require_cuda()
    return _cupy.RawModule(code=kernel_code(source_path)).get_function(name)


def kernel_code(source_path: str) -> str:
    """A CUDA source file's text with each ``#include "header"`` beside it written in,
    so the code CuPy compiles (and caches by its text) is all of it."""
    folder = os.path.dirname(os.path.abspath(os.fspath(source_path)))
    with open(os.fspath(source_path), encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    for i, line in enumerate(lines):
        header = line.strip()[len('#include "'):-1] if line.startswith('#include "') else None
        if header and os.path.exists(os.path.join(folder, header)):
            lines[i] = kernel_code(os.path.join(folder, header)).replace("#pragma once\n", "")
    return "".join(lines)


def kernel_for(source_path: str, name: str, dtype):
    """The kernel ``name``_f32 or ``name``_f64 of ``source_path``, by ``dtype``: each
    source defines one of each, by a template."""
    return load_kernel(source_path, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")


def launch_flat(source_path: str, name: str, x, args, items_per_thread: int = 1) -> None:
    """Run the kernel ``name``_f32 or _f64 (by ``x``'s dtype) of ``source_path`` over
    ``x``'s elements, ``items_per_thread`` to a thread, 256 threads to a block, at most
    65,536 blocks (the kernel covers the rest with a grid-stride loop)."""
    work = -(-int(x.size) // items_per_thread)
    blocks = max(1, min(-(-work // 256), 1 << 16))
    kernel_for(source_path, name, x.dtype)((blocks,), (256,), args)


def launch_per_row(source_path: str, name: str, x, args) -> None:
    """Run the kernel ``name``_f32 or _f64 (by ``x``'s dtype) of ``source_path`` with one
    thread block per row of ``x`` (every axis but the last), a power of two threads near
    the row's width (32 to 1024) and one element of shared memory per thread."""
    width = x.shape[-1]
    threads = min(1024, max(32, 1 << (int(width) - 1).bit_length()))
    rows = math.prod(x.shape[:-1])
    kernel_for(source_path, name, x.dtype)((rows,), (threads,), args, shared_mem=threads * x.itemsize)
