"""Row softmax as CUDA kernels (softmax.cu): one thread block per row finds its
maximum, writes exp(x - max) and sums it in one launch, and the backward's
y * (g - sum(g * y)) is one launch too, where the textbook's array code takes a launch
and a round trip to memory for each of max, subtract, exp, sum and divide. The launchers
below equal ``kernels.cpu.row_softmax``'s functions of the same names.

The classes at the end run ``ops.softmax.Softmax``, ``ops.softmax.LogSoftmax``,
``ops.cross_entropy.CrossEntropy`` and ``ops.cross_entropy.LinearCrossEntropy`` on these
kernels: each is the CPU path's class (kernels/cpu/softmax.py, kernels/cpu/lm_head.py),
whose array code runs on CuPy as it does on NumPy, with these launchers as its engine in
place of the CPU's row-softmax engine, and the NumPy-only BLAS row sums replaced.
"""
from __future__ import annotations

import math
import pathlib
import types

import numpy as np

from ...backend import get_array_module, kernels
from ...ops.cross_entropy import CrossEntropy, LinearCrossEntropy
from ...ops.softmax import LogSoftmax, Softmax
from ..cpu.lm_head import LinearCrossEntropyInBlocks
from ..cpu.row_softmax import softmax_from
from ..cpu.softmax import CrossEntropyRows, LogSoftmaxRows, SoftmaxRows

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
    """softmax over the last axis on the kernel's ``exp_rows``; with ``masked_rows`` an all
    -inf row gives zeros."""
    return softmax_from(exp_rows, x, out, masked_rows)


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


class OnTheSoftmaxKernel:
    """What the classes below add to their CPU path: these launchers as the engine, in
    place of ``kernels.cpu.row_softmax``, and the kernel's needs of the arrays."""

    engine = types.SimpleNamespace(exp_rows=exp_rows, softmax_rows=softmax_rows,
                                   softmax_backward_rows=softmax_backward_rows)

    def suits(self, *arrays):
        return kernels.suits_kernel(*arrays)


@kernels.register(Softmax, device="cuda", kernel="softmax")
class SoftmaxKernel(OnTheSoftmaxKernel, SoftmaxRows):
    pass


@kernels.register(LogSoftmax, device="cuda", kernel="softmax")
class LogSoftmaxKernel(OnTheSoftmaxKernel, LogSoftmaxRows):
    backward = LogSoftmax.backward  # g - exp(y) * sum(g): no kernel, and no NumPy BLAS row sums


@kernels.register(CrossEntropy, device="cuda", kernel="softmax")
class CrossEntropyKernel(OnTheSoftmaxKernel, CrossEntropyRows):
    pass


@kernels.register(LinearCrossEntropy, device="cuda", kernel="softmax")
class LinearCrossEntropyKernel(OnTheSoftmaxKernel, LinearCrossEntropyInBlocks):
    column_sums = staticmethod(lambda a: a.sum(axis=0))  # not the CPU's NumPy BLAS product
