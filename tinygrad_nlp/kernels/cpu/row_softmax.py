"""Softmax over rows as the CPU computes it fastest: the engine of the CPU paths of
softmax, log-softmax, cross-entropy, the LM head and attention. Each function equals the
textbook ``exp(x - max)`` over its row sum (``ops.softmax``) to rounding.

Why it is faster:
- Rows go through in blocks that stay in the CPU's cache while max, subtract, exp and
  sum run over them, so memory is read once instead of four times.
- Rows that fit a block several times share one shift, the block's maximum: NumPy
  reduces a block to one number faster than each of its rows to one, and
  subtracting a scalar is a plainer loop than subtracting a column. Softmax is the same
  for any shift; what changes is only where a row's exponentials stop being normal
  floats, so a row whose exponentials sum to less than ``SMALLEST_SHARED_TOTAL`` (its
  maximum far below the block's) is made again with its own maximum. Every exponential
  within about 3/4 of the exponent range (less log C) of its row's maximum keeps full
  precision.
- Row sums are BLAS products (``rowwise``), and every pass writes in place.
"""
from __future__ import annotations

import math

import numpy as np

from ...backend import rows_per_block
from .rowwise import row_max, row_sum

SMALLEST_SHARED_TOTAL = {char: np.finfo(char).tiny ** 0.25 for char in "efd"}  # e^-22 in float32


def exp_by_row_max(x, out, masked_rows):
    """exp(x - row max) of a 2-D block into ``out``; its (rows, 1) maxima and row sums."""
    shift = row_max(x)
    if masked_rows:  # a row of all -inf (every key masked) has shift 0, so its exponentials are 0, not NaN
        shift[~np.isfinite(shift)] = 0
    np.subtract(x, shift, out=out)
    np.exp(out, out=out)
    return shift, row_sum(out)


def exp_by_block_max(x, out, masked_rows):
    """exp(x - m) of a 2-D block into ``out``, m the maximum of the whole block (rows
    whose sum comes out below ``SMALLEST_SHARED_TOTAL`` made again with their own);
    the (rows, 1) shifts and row sums."""
    top = x.max()
    if not np.isfinite(top):  # all -inf, or inf/NaN inside: the row-by-row path says what they give
        return exp_by_row_max(x, out, masked_rows)
    if np.may_share_memory(x, out):  # in place: keep x (a cache-sized block) for rows made again
        x = x.copy()
    np.subtract(x, top, out=out)
    np.exp(out, out=out)
    total = row_sum(out)
    shift = np.full(total.shape, top, dtype=x.dtype)
    low = np.flatnonzero(total[:, 0] < SMALLEST_SHARED_TOTAL[x.dtype.char])
    if low.size:
        again = np.empty((low.size, x.shape[1]), dtype=x.dtype)
        shift[low], total[low] = exp_by_row_max(x[low], again, masked_rows)
        out[low] = again
    return shift, total


def exp_rows(x, out=None, masked_rows=False):
    """For x (..., C): exp(x - shift) (into ``out``, which may be x), the shifts and the
    row sums of the exponentials (both (..., 1)); each row's shift is at least its
    maximum, so every exponential is at most 1. With ``masked_rows``, a row that is all
    -inf gives exponentials 0 (shift 0, sum 0) instead of NaN."""
    lead = tuple(x.shape[:-1]) + (1,)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, dtype=x.dtype) if out is None else out
    width, n = x.shape[-1], math.prod(x.shape[:-1])
    rows_in, rows_out = x.reshape(n, width), out.reshape(n, width)
    shift, total = np.empty((n, 1), dtype=x.dtype), np.empty((n, 1), dtype=x.dtype)
    step = rows_per_block(np, n, width * x.itemsize)
    exp_of_block = exp_by_block_max if step > 1 else exp_by_row_max
    if step == 1:  # a row wider than the cache gains nothing from blocks: all rows at once
        step = n
    for start in range(0, n, step):
        rows = slice(start, start + step)
        shift[rows], total[rows] = exp_of_block(rows_in[rows], rows_out[rows], masked_rows)
    return out, shift.reshape(lead), total.reshape(lead)


def softmax_from(exp_rows_of, x, out=None, masked_rows=False):
    """softmax over the last axis from an ``exp_rows`` (this module's, or the CUDA kernel's
    of kernels/cuda/softmax.py), into ``out`` (which may be x). With ``masked_rows``, an
    all -inf row gives all zeros."""
    e, _, total = exp_rows_of(x, out=out, masked_rows=masked_rows)
    if masked_rows:
        total[total == 0] = 1
    e /= total
    return e


def softmax_rows(x, out=None, masked_rows=False):
    """softmax over the last axis (into ``out``, which may be x); ``softmax_from``."""
    return softmax_from(exp_rows, x, out, masked_rows)


def softmax_backward_rows(y, g, out=None):
    """The backward of y = softmax(x) over the last axis, y * (g - sum(g * y)), into
    ``out`` (which may be g)."""
    grad = np.subtract(g, row_sum(g * y), out=out)
    grad *= y
    return grad
