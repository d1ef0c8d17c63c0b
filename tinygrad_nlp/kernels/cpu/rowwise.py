"""Sums, means and maxima over the last axis as the CPU computes them fastest: the inner
loop of the fast paths of softmax, cross-entropy, layer norm and attention.

NumPy's ``sum(axis=-1)`` pays a per-row overhead and a pairwise-summation tree, which
dominates when rows are short (20 keys, 128 features) or many; a matrix-vector product
with a vector of ones runs in BLAS at memory speed instead (``python benchmarks/ops.py``
measures it). ``max`` has no BLAS form, so short rows are reduced by an elementwise
maximum over their columns, one vectorised pass per column instead of a per-row loop.
Each equals the NumPy reduction it replaces to rounding (summation order).
"""
from __future__ import annotations

import math

import numpy as np

SHORT_ROW = 32  # rows up to this wide take the maximum column by column


def row_sum(x, keepdims: bool = True):
    """x.sum(axis=-1), as x @ ones."""
    total = x @ np.ones(x.shape[-1], dtype=x.dtype)
    return total[..., None] if keepdims else total


def row_mean(x, keepdims: bool = True):
    """x.mean(axis=-1), as x @ (ones / n)."""
    n = x.shape[-1]
    mean = x @ np.full(n, 1.0 / n if n else 0.0, dtype=x.dtype)
    return mean[..., None] if keepdims else mean


def row_max(x, keepdims: bool = True):
    """x.max(axis=-1) (the last axis must not be empty)."""
    n = x.shape[-1]
    if n > SHORT_ROW or n == 0:
        return x.max(axis=-1, keepdims=keepdims)
    best = x[..., 0].copy()
    for j in range(1, n):
        np.maximum(best, x[..., j], out=best)
    return best[..., None] if keepdims else best


def leading_sum(x):
    """x summed over every axis but the last (a bias or norm-weight gradient), as
    ones @ rows: (..., D) -> (D,)."""
    rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) if x.ndim else x.reshape(1, 1)
    return np.ones(rows.shape[0], dtype=x.dtype) @ rows
