"""The fused CUDA kernels: the switch, the one dispatch, loading and launching.

An op with a fused kernel declares both of its paths once, outside its math:

    layer_norm_rows = kernels.dispatch("layer_norm", generic=_rows_generic, kernel=_rows_kernel)

and calls the result as it would either path. ``dispatch`` runs the kernel path when the
kernel is switched on and the call's arrays suit it (CuPy arrays, one float dtype, and
the op's own condition, ``applies``), and the generic array code otherwise. No op body
asks which path it is on (Chainer's ``forward_cpu`` / ``forward_gpu``, Thinc's
``CupyOps`` overriding ``Ops``).

A kernel runs only when switched on by name: each is written and compiled in CI
(tests/test_kernels.py) but becomes a default only after the ``gpu`` tests have run it
against CuPy's generic array code on a real GPU. None has been yet, so the set starts
empty; ``TINYGRAD_NLP_FUSED_KERNELS=layer_norm,dropout`` (names, comma-separated, or
``all``) switches kernels on, as benchmarks/gpu_report.py does to test and time them.
"""
from __future__ import annotations

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


__all__ = ["FUSED_KERNEL_NAMES", "fused_kernels_from", "fused_kernels", "kernel_suits", "dispatch", "load_kernel",
           "kernel_code", "kernel_for", "launch_flat", "launch_per_row", "launch_grid"]
