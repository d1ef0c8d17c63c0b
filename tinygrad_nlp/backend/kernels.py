"""The one dispatch: which implementation of an op runs on a call.

Every op is a ``Function`` class in ``ops/`` whose own ``forward`` and ``backward`` are
the textbook math. A faster way to compute the same op is a subclass of that class in
``kernels/`` (``kernels/cpu``: array tricks on NumPy; ``kernels/cuda``: CUDA kernels),
registered for it:

    @kernels.register(LayerNorm, device="cpu")
    class BlasLayerNorm(LayerNorm): ...

When an op is called, ``Function.__call__`` asks ``implementation(node, arrays)`` and the
node becomes an instance of the class it names: the first registered path for the
arrays' device that is switched on and whose ``suits(*arrays)`` holds, else the op's own
class. So ``check``, the op's settings and its saved names stay one, and no op body asks
which path it is on (Chainer's ``forward_cpu`` / ``forward_gpu``, Thinc's ``CupyOps``
overriding ``Ops``, PyTorch's references beside its kernels).

``reference_ops()`` (or ``TINYGRAD_NLP_REFERENCE=1``) runs every op on its textbook
class alone, as PyTorch's ``TorchRefsMode`` runs a program on ``torch/_refs``.

A CUDA kernel runs only when switched on by name: each is written and compiled in CI
(tests/test_kernels.py) but becomes a default only after the ``gpu`` tests have run it
against the textbook op on a real GPU. None has been yet, so the set starts empty;
``TINYGRAD_NLP_FUSED_KERNELS=layer_norm,dropout`` (names, comma-separated, or ``all``)
switches kernels on, as benchmarks/gpu_report.py does to test and time them. The CPU
paths are on by default: each is tested equal to its op on every test run.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import pathlib
import warnings

import numpy as np

from . import arrays

FUSED_KERNEL_NAMES = ("layer_norm", "softmax", "dropout", "adam", "bias_activation", "embedding_backward")


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


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or arrays.is_cupy_array(a)


def kernel_suits(name: str, *args) -> bool:
    """Whether the kernel ``name`` should run on a call with these arguments: it is
    switched on, every array among them is a CuPy array, and the floating ones share
    one dtype, float32 or float64."""
    if name not in fused_kernels:  # the usual case, every op call on the CPU: nothing else to look at
        return False
    found = [a for a in args if _is_array(a)]
    if not found or not all(arrays.is_cupy_array(a) for a in found):
        return False
    floats = {a.dtype for a in found if a.dtype.kind == "f"}
    return len(floats) == 1 and floats <= {np.dtype(np.float32), np.dtype(np.float64)}


def dispatch(name: str, generic, kernel, applies=None):
    """One function from an op's two paths: each call runs ``kernel`` when the kernel
    ``name`` suits its arguments, positional and keyword (``kernel_suits``), and ``applies(*args, **kwargs)``
    (the op's own condition, if any) holds, else ``generic``. Both take the same
    arguments and give the same results within rounding."""
    if name not in FUSED_KERNEL_NAMES:
        raise ValueError(f"kernels.dispatch: unknown kernel {name!r}, known: {list(FUSED_KERNEL_NAMES)}")

    @functools.wraps(generic)
    def run(*args, **kwargs):
        if kernel_suits(name, *args, *kwargs.values()) and (applies is None or applies(*args, **kwargs)):
            return kernel(*args, **kwargs)
        return generic(*args, **kwargs)
    run.kernel_name, run.generic, run.kernel = name, generic, kernel
    return run


# -- the registry of faster implementations ----------------------------------------------
_faster: dict = {}  # op class -> the classes registered for it, in the order registered
_reference_mode = os.environ.get("TINYGRAD_NLP_REFERENCE", "") not in ("", "0")


def register(op, device: str, kernel: str | tuple = ()):
    """A class decorator: the decorated subclass of ``op`` computes the same function
    faster on ``device`` ("cpu" or "cuda"). ``kernel``: the name (or names) of the CUDA
    kernels it launches, which ``TINYGRAD_NLP_FUSED_KERNELS`` must all switch on. The
    dispatch tries an op's classes in the order they were registered."""
    if device not in arrays.DEVICES:
        raise ValueError(f"kernels.register: unknown device {device!r}, known: {list(arrays.DEVICES)}")
    names = (kernel,) if isinstance(kernel, str) else tuple(kernel)
    if set(names) - set(FUSED_KERNEL_NAMES):
        raise ValueError(f"kernels.register: unknown kernel {kernel!r}, known: {list(FUSED_KERNEL_NAMES)}")

    def add(fast):
        if not issubclass(fast, op):
            raise TypeError(f"kernels.register: {fast.__name__} must be a subclass of {op.__name__}")
        fast.speeds_up, fast.device, fast.kernel_names = op, device, names
        _faster.setdefault(op, []).append(fast)
        return fast
    return add


def registered(op=None) -> list:
    """The faster classes registered for ``op`` (for every op when None), in order."""
    return list(_faster.get(op, ())) if op is not None else [fast for paths in _faster.values() for fast in paths]


def is_switched_on(fast) -> bool:
    """Whether a registered class may run: not in reference mode, and the kernels it
    launches (if any) switched on."""
    return not _reference_mode and set(fast.kernel_names) <= fused_kernels


def implementation(node, arrays_in) -> type:
    """The class whose forward and backward should run ``node`` (a Function, checked)
    on these input arrays: the first registered faster class of ``type(node)`` for their
    device that is switched on and ``suits`` them, else ``type(node)`` itself."""
    paths = _faster.get(type(node))
    if not paths or _reference_mode:
        return type(node)
    device = device_of_call(arrays_in)
    for fast in paths:
        if fast.device == device and is_switched_on(fast) and fast.suits(node, *arrays_in):
            return fast
    return type(node)


def device_of_call(arrays_in) -> str:
    """"cuda" when the call's arrays are CuPy arrays, else "cpu"."""
    return "cuda" if any(arrays.is_cupy_array(a) for a in arrays_in) else "cpu"


def in_reference_mode() -> bool:
    return _reference_mode


def set_reference_mode(enabled: bool) -> bool:
    """Switch the reference mode on or off from here on; returns what it was."""
    global _reference_mode
    previous, _reference_mode = _reference_mode, bool(enabled)
    return previous


@contextlib.contextmanager
def reference_ops(enabled: bool = True):
    """Within this block every op runs its textbook ``forward`` and ``backward`` alone
    (no registered CPU path, no CUDA kernel): ``with tinygrad_nlp.reference_ops(): ...``."""
    previous = set_reference_mode(enabled)
    try:
        yield
    finally:
        set_reference_mode(previous)


def suits_kernel(*arrays_in) -> bool:
    """What every CUDA kernel needs of its arrays: all CuPy, the floating ones of one
    dtype, float32 or float64, and not empty."""
    found = [a for a in arrays_in if _is_array(a)]
    if not found or not all(arrays.is_cupy_array(a) for a in found):
        return False
    floats = {a.dtype for a in found if a.dtype.kind == "f"}
    return len(floats) == 1 and floats <= {np.dtype(np.float32), np.dtype(np.float64)} and found[0].size > 0


@functools.cache
def load_kernel(source_path, name: str):
    """The CUDA function ``name`` (an ``extern "C" __global__`` function) of the source
    file ``source_path``, compiled once by CuPy (NVRTC) and cached."""
    arrays.require_cuda()
    return arrays.cupy_module().RawModule(code=kernel_code(source_path)).get_function(name)


def kernel_code(source_path) -> str:
    """A CUDA source file's text with each ``#include "header"`` beside it written in,
    so the code CuPy compiles (and caches by its text) is all of it."""
    source = pathlib.Path(source_path).resolve()
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        header = line.strip()[len('#include "'):-1] if line.startswith('#include "') else None
        if header and (source.parent / header).exists():
            lines[i] = kernel_code(source.parent / header).replace("#pragma once\n", "")
    return "".join(lines)


def kernel_for(source_path, name: str, dtype):
    """The kernel ``name``_f32 or ``name``_f64 of ``source_path``, by ``dtype``: each
    source defines one of each, by a template."""
    return load_kernel(source_path, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")


def launch_flat(source_path, name: str, x, args, items_per_thread: int = 1) -> None:
    """Run the kernel ``name``_f32 or _f64 (by ``x``'s dtype) of ``source_path`` over
    ``x``'s elements, ``items_per_thread`` to a thread, 256 threads to a block, at most
    65,536 blocks (the kernel covers the rest with a grid-stride loop)."""
    work = -(-int(x.size) // items_per_thread)
    blocks = max(1, min(-(-work // 256), 1 << 16))
    kernel_for(source_path, name, x.dtype)((blocks,), (256,), args)


def launch_per_row(source_path, name: str, x, args) -> None:
    """Run the kernel ``name``_f32 or _f64 (by ``x``'s dtype) of ``source_path`` with one
    thread block per row of ``x`` (every axis but the last), a power of two threads near
    the row's width (32 to 1024) and one element of shared memory per thread."""
    width = x.shape[-1]
    threads = min(1024, max(32, 1 << (int(width) - 1).bit_length()))
    rows = math.prod(x.shape[:-1])
    kernel_for(source_path, name, x.dtype)((rows,), (threads,), args, shared_mem=threads * x.itemsize)


def launch_grid(source_path, name: str, dtype, blocks: int, threads: int, args) -> None:
    """Run the kernel ``name``_f32 or _f64 (by ``dtype``) of ``source_path`` on ``blocks``
    blocks of ``threads`` threads (for kernels that lay out their own work)."""
    kernel_for(source_path, name, dtype)((max(1, int(blocks)),), (int(threads),), args)


__all__ = ["FUSED_KERNEL_NAMES", "fused_kernels_from", "fused_kernels", "kernel_suits", "dispatch", "register",
           "registered", "is_switched_on", "implementation", "in_reference_mode", "reference_ops",
           "set_reference_mode", "device_of_call", "suits_kernel", "load_kernel",
           "kernel_code", "kernel_for", "launch_flat", "launch_per_row", "launch_grid"]
