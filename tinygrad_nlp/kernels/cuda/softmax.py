"""Row softmax as CUDA kernels (softmax.cu): one thread block per row finds its
maximum, writes exp(x - max) and sums it in one launch, and the backward's
y * (g - sum(g * y)) is one launch too. The launchers below equal
``kernels.cpu.row_softmax``'s functions of the same names; the classes that use them
(registered for softmax, cross-entropy and attention) are beside their CPU paths."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from ...backend import get_array_module, kernels

SOURCE = pathlib.Path(__file__).with_name("softmax.cu")


def exp_rows(x, out=None, masked_rows=False):
    """exp(x - row max) over the last axis (into ``out``, which may be x), and the (..., 1)
    maxima and row sums; with ``masked_rows`` an all -inf row gives zeros."""
    xp = get_array_module(x)
    lead = tuple(x.shape[:-1]) + (1,)
    x = xp.ascontiguousarray(x)
    out = xp.empty(x.shape, dtype=x.dtype) if out is None else out
    width, n = x.shape[-1], math.prod(x.shape[:-1])
    rows_in, rows_out = x.reshape(n, width), out.reshape(n, width)
    shift, total = xp.empty((n, 1), dtype=x.dtype), xp.empty((n, 1), dtype=x.dtype)
    kernels.launch_per_row(SOURCE, "exp_rows", rows_in,
                           (rows_in, np.int64(width), np.int32(masked_rows), rows_out, shift, total))
    return out, shift.reshape(lead), total.reshape(lead)


def softmax_rows(x, out=None, masked_rows=False):
    """softmax over the last axis; with ``masked_rows`` an all -inf row gives zeros."""
    e, _, total = exp_rows(x, out=out, masked_rows=masked_rows)
    if masked_rows:
        total[total == 0] = 1
    e /= total
    return e


def softmax_backward_rows(y, g, out=None):
    """y * (g - sum(g * y)) over the last axis in one launch (into ``out``, which may be g)."""
    xp = get_array_module(y, g)
    y, g = xp.ascontiguousarray(y), xp.ascontiguousarray(g)
    grad = g if out is g else xp.empty_like(g)
    kernels.launch_per_row(SOURCE, "softmax_backward", y, (y, g, np.int64(y.shape[-1]), grad))
    if out is not None and out is not grad:
        out[...] = grad
        return out
    return grad
