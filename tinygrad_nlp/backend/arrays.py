"""Arrays and devices: NumPy on ``"cpu"``, CuPy on ``"cuda"``.

Everything else in the package asks this module for the array module of its inputs
(``get_array_module``) and moves arrays between devices (``to_device``). Where CPU and
GPU need different code for one job, the difference is a named function here:
``scatter_add`` (repeated-index accumulation), ``rows_per_block`` (cache blocking on the
CPU, one block on the GPU), ``erf`` and ``normal_cdf``.
"""
from __future__ import annotations

import numpy as np

from ..errors import DeviceError
from .erf import erf as _numpy_erf
from .erf import normal_cdf as _numpy_normal_cdf
from .erf import normal_cdf_through

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


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulating (``np.add.at`` on
    the CPU, ``cupyx.scatter_add`` on the GPU)."""
    if is_cupy_array(target):
        import cupyx
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


# Several elementwise passes over a block of this many bytes run in the L2 cache of the
# CPU instead of memory (softmax rows, attention scores, Adam's moments). A GPU runs each
# pass as one kernel over everything instead.
CACHE_BLOCK_BYTES = 1 << 18


def rows_per_block(xp, n_rows: int, row_bytes: int, block_bytes: int | None = None) -> int:
    """How many rows of ``row_bytes`` each to process at a time: a block of
    ``block_bytes`` (default ``CACHE_BLOCK_BYTES``, a cache-sized one) on the CPU, all
    ``n_rows`` at once on the GPU (at least 1)."""
    if xp is not np:
        return max(1, n_rows)
    return max(1, (block_bytes or CACHE_BLOCK_BYTES) // max(1, row_bytes))


def erf(x):
    """The error function, elementwise, to the precision of x's dtype: CuPy's on the GPU,
    ``backend.erf``'s vectorized NumPy on the CPU."""
    if is_cupy_array(x):
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    return _numpy_erf(x)


def normal_cdf(x, density: bool = False):
    """(Phi(x), phi(x) or None): the standard normal CDF and, with ``density``, its
    density, elementwise; through CuPy's erf on the GPU, ``backend.erf.normal_cdf`` on the CPU."""
    if not is_cupy_array(x):
        return _numpy_normal_cdf(x, density)
    import cupyx.scipy.special
    return normal_cdf_through(_cupy, cupyx.scipy.special.erf, x, density)


def cupy_module():
    """CuPy, or None where it is not installed (for the backend's other rooms)."""
    return _cupy
