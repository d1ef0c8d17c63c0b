"""Inverted dropout, the one implementation (``Dropout`` and attention's probabilities).
Guide: docs/backward.md#dropout

A draw of which elements are kept is a ``DropoutMask``, made by ``draw_dropout_mask``
and applied to the forward's input and again to the backward's gradient. Its generic
form keeps a boolean mask (one byte per element); with the fused kernel on the GPU
(ops/dropout.cu) it keeps only a Philox key and counter and the kernel draws the same
mask again wherever it is applied.
"""
from __future__ import annotations

import pathlib

import numpy as np

from ..backend import get_array_module, keep_mask, kernels, philox_stream
from ..tensor import Function, as_tensors
from .checks import check_probability

KERNEL_SOURCE = pathlib.Path(__file__).parents[1] / "kernels" / "cuda" / "dropout.cu"


def _scale_of(p: float) -> float:
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


class KeptMask:
    """A dropout draw over ``shape`` kept as a boolean mask (True = kept). Array-like
    (``shape``, ``dtype``, ``nbytes``), so a node that saves it counts its bytes."""

    def __init__(self, like, p: float, shape=None):
        self.keep = keep_mask(get_array_module(like), tuple(like.shape if shape is None else shape), p)
        self.scale, self.shape, self.dtype, self.nbytes = _scale_of(p), self.keep.shape, self.keep.dtype, self.keep.nbytes

    def apply(self, x, rows=None, out=None):
        """x * keep[rows] / (1 - p) (``rows``: a slice of the first axis; default all),
        into ``out`` (which may be x) or a new array."""
        # scale first, then mask in place: twice as fast as x * mask, which casts the
        # boolean mask in a slow mixed-type loop
        y = get_array_module(x).multiply(x, x.dtype.type(self.scale), out=out)
        y *= self.keep if rows is None else self.keep[rows]
        return y


class PhiloxMask:
    """A dropout draw kept as Philox streams (ops/philox.cuh), one per block of rows:
    the kernel draws a block's mask from its stream each time it is applied, so nothing
    of the size of the mask is stored."""

    def __init__(self, like, p: float, shape=None):
        self.p, self.scale, self.streams = p, _scale_of(p), {}

    def stream_of(self, rows: slice | None, size: int):
        start = None if rows is None else rows.start
        if start not in self.streams:
            self.streams[start] = philox_stream(size)
        return self.streams[start]

    def apply(self, x, rows=None, out=None):
        xp = get_array_module(x)
        x = xp.ascontiguousarray(x)
        y = xp.empty_like(x) if out is None or not out.flags.c_contiguous else out  # in place is safe: y[i] from x[i]
        threshold = min(round(self.p * 2 ** 32), 2 ** 32 - 1)
        key0, key1, offset = self.stream_of(rows, x.size)
        kernels.launch_flat(KERNEL_SOURCE, "dropout", x,
                            (x, np.int64(x.size), np.uint32(threshold), x.dtype.type(self.scale), np.uint32(key0),
                             np.uint32(key1), np.uint64(offset), y), items_per_thread=4)
        if out is not None and y is not out:
            out[...] = y
            return out
        return y


# p = 1 drops everything: the generic path's all-False mask
draw_dropout_mask = kernels.dispatch("dropout", generic=KeptMask, kernel=PhiloxMask, applies=lambda like, p, *_: p < 1)
draw_dropout_mask.__doc__ = """A new draw of which elements of an array shaped ``shape`` (default: like
``like``'s) dropout with probability ``p`` keeps, on ``like``'s device; ``.apply(x, rows)``
gives x * mask / (1 - p) for a slice of rows of the first axis."""


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p). The forward saves
    the draw (``keep``: a boolean mask, 1 byte per element, or with the fused GPU kernel
    only the generator's key and counter). With p = 1 everything is dropped and y = 0.
    """

    floating = True

    def __init__(self, p):
        self.p = check_probability(p)

    def forward(self, x):
        self.save(keep=draw_dropout_mask(x, self.p))
        return self.keep.apply(x)

    def backward(self, g):
        return self.keep.apply(g)  # the same draws scale the gradient as they scaled x


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0."""
    check_probability(p)
    if not training or p == 0:
        return as_tensors((x,))[0]
    return Dropout(p)(x)
