"""Sums, means and maxima over the last axis: the inner loop of softmax, cross-entropy,
layer norm and attention.

NumPy's ``sum(axis=-1)`` pays a per-row overhead and a pairwise-summation tree, which
dominates when rows are short (20 keys, 128 features) or many; a matrix-vector product
with a vector of ones runs in BLAS at memory speed instead (3x to 10x faster on the
tutorials' shapes, ``python benchmarks/ops.py``). ``max`` has no BLAS form, so short
rows are reduced on the CPU by an elementwise maximum over their columns (on the GPU
by one reduction kernel).
"""
from __future__ import annotations

import math

from ..backend import get_array_module, per_device

_SHORT_ROW = 32


def row_sum(x, keepdims: bool = True):
    """Sum over the last axis."""
    xp = get_array_module(x)
    total = x @ xp.ones(x.shape[-1], dtype=x.dtype)
    return total[..., None] if keepdims else total


def row_mean(x, keepdims: bool = True):
    """Mean over the last axis."""
    xp = get_array_module(x)
    n = x.shape[-1]
    mean = x @ xp.full(n, 1.0 / n if n else 0.0, dtype=x.dtype)
    return mean[..., None] if keepdims else mean


def _row_max_cpu(x, keepdims: bool = True):
    n = x.shape[-1]
    if n > _SHORT_ROW or n == 0:
        return x.max(axis=-1, keepdims=keepdims)
    best = x[..., 0].copy()
    for j in range(1, n):
        get_array_module(x).maximum(best, x[..., j], out=best)
    return best[..., None] if keepdims else best


def _row_max_gpu(x, keepdims: bool = True):
    return x.max(axis=-1, keepdims=keepdims)  # one kernel; a loop over columns would be n


row_max = per_device(cpu=_row_max_cpu, cuda=_row_max_gpu)
row_max.__doc__ = "Maximum over the last axis (which must not be empty)."


def leading_sum(x):
    """Sum over every axis but the last (a bias or norm-weight gradient): (..., D) -> (D,)."""
    xp = get_array_module(x)
    rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) if x.ndim else x.reshape(1, 1)
    return xp.ones(rows.shape[0], dtype=x.dtype) @ rows
