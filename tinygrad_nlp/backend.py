"""The one place that knows NumPy from CuPy.

Devices are named ``"cpu"`` (NumPy) and ``"cuda"`` (CuPy). Everything else in the
package asks this module for the array module of its inputs (``get_array_module``),
moves arrays between devices (``to_device``) and draws random numbers (``rng``).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DeviceError

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


# ---------------------------------------------------------------------------
# Random numbers: one generator per backend, seeded together by manual_seed.
# ---------------------------------------------------------------------------
_rng_cpu = np.random.default_rng()
_rng_cuda = None
_seed = None


def manual_seed(seed: int) -> None:
    """Seed parameter initialisation and dropout on both backends."""
    global _rng_cpu, _rng_cuda, _seed
    _seed = int(seed)
    _rng_cpu = np.random.default_rng(_seed)
    _rng_cuda = _cupy.random.RandomState(_seed) if cuda_available() else None


def rng(xp=np):
    """The seeded generator of a backend: a NumPy ``Generator`` or a CuPy ``RandomState``."""
    global _rng_cuda
    if xp is np:
        return _rng_cpu
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


def scatter_add_rows(num_rows: int, indices, values):
    """``out[indices[i]] += values[i]`` into a fresh ``(num_rows, D)`` array.

    Repeated indices accumulate. On the CPU the rows are grouped by a stable sort and
    each group summed in order (``np.add.reduceat``), which is deterministic and much
    faster than ``np.add.at`` for wide rows; on the GPU a deterministic segmented sum
    is used (see ``_scatter_add_rows_cuda``).
    """
    xp = get_array_module(indices, values)
    values = values.reshape(indices.size, math.prod(values.shape[indices.ndim:]))
    indices = indices.reshape(-1)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    if indices.size == 0:
        return out
    if xp is not np:
        return _scatter_add_rows_cuda(out, indices, values)
    order = np.argsort(indices, kind="stable")
    sorted_ids = indices[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    lengths = np.diff(np.r_[starts, indices.size])
    # ids that occur once are copied; reduceat pays a per-segment overhead, so it only
    # sums the repeated ones (6x faster on 8,192 mostly distinct ids of width 256)
    once = lengths == 1
    out[sorted_ids[starts[once]]] = values[order[starts[once]]]
    if not once.all():
        repeated = np.repeat(~once, lengths)
        rep_order, rep_ids = order[repeated], sorted_ids[repeated]
        rep_starts = np.flatnonzero(np.r_[True, rep_ids[1:] != rep_ids[:-1]])
        out[rep_ids[rep_starts]] = np.add.reduceat(values[rep_order], rep_starts, axis=0)
    return out


_segment_sum_kernel = None


def _scatter_add_rows_cuda(out, indices, values):
    """Deterministic GPU scatter-add: sort ids, then one thread per (segment, column)
    sums its segment in order (no atomics, so the result does not depend on timing)."""
    global _segment_sum_kernel
    cp = _cupy
    if _segment_sum_kernel is None:
        _segment_sum_kernel = cp.ElementwiseKernel(
            "raw T vals, raw int64 order, raw int64 starts, raw int64 ends, int64 D",
            "T acc",
            """
            const long long seg = i / D, col = i % D;
            T s = 0;
            for (long long j = starts[seg]; j < ends[seg]; ++j) s += vals[order[j] * D + col];
            acc = s;
            """,
            "tinygrad_nlp_segment_sum",
        )
    indices = indices.astype(cp.int64, copy=False)
    order = cp.argsort(indices).astype(cp.int64)  # CuPy's argsort is a stable radix sort
    sorted_ids = indices[order]
    boundary = cp.ones(sorted_ids.shape, dtype=bool)
    boundary[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = cp.flatnonzero(boundary).astype(cp.int64)
    ends = cp.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = sorted_ids.size
    D = values.shape[1]
    sums = cp.empty((starts.size, D), dtype=values.dtype)
    _segment_sum_kernel(cp.ascontiguousarray(values), order, starts, ends, D, sums)
    out[sorted_ids[starts]] = sums
    return out


# -- a reusable work buffer --------------------------------------------------------------
# The first write to a freshly allocated large NumPy array page-faults every 4 KiB; for
# the MLM head's (scored positions x 40,000) float32 logits that costs about as much as
# the matrix product that fills them. Ops that own such a buffer from forward to
# backward take it here and hand it back when done. CuPy keeps its own memory pool.
_spare = {}


def take_buffer(xp, shape, dtype):
    """An uninitialised C-contiguous array of ``shape``, reusing the spare one of this
    dtype when it is large enough (sizes vary from batch to batch, so a quarter more
    than asked is allocated)."""
    dtype = xp.dtype(dtype)
    n = math.prod(shape)
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    spare = _spare.pop(dtype.str, None)
    if spare is None or spare.size < n:
        spare = np.empty(n + n // 4, dtype=dtype)
    return spare[:n].reshape(shape)


def give_back_buffer(array) -> None:
    """Return an array from ``take_buffer``; the caller must hold no other reference to it."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, np.ndarray) and base.ndim == 1 and base.flags.c_contiguous:
        current = _spare.get(base.dtype.str)
        if current is None or current.size < base.size:
            _spare[base.dtype.str] = base
