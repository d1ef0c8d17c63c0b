"""Inverted dropout. Guide: docs/backward.md#dropout

On the GPU, with ``backend.use_fused_kernel("dropout", ...)``, the mask is drawn inside
one kernel (ops/dropout.cu) from a counter-based generator and drawn again by the
backward, so it is never stored.
"""
from __future__ import annotations

import pathlib

import numpy as np

from ..backend import get_array_module, keep_mask, launch_flat, philox_stream, use_fused_kernel
from ..tensor import Function, as_tensors
from .checks import check_probability


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p). The forward saves
    the boolean mask (1 byte per element), or with the fused GPU kernel only the
    generator's key and counter (``stream``). With p = 1 everything is dropped and y = 0.
    """

    stream = None  # (key, key, first counter) of the fused kernel's draws

    floating = True

    def __init__(self, p):
        self.p = check_probability(p)
        self.scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)

    def forward(self, x):
        if fused_dropout_wanted(self.p, x):
            self.stream = philox_stream(x.size)
            return fused_dropout(x, self.p, self.scale, self.stream)
        keep = keep_mask(get_array_module(x), x.shape, self.p)
        self.save(keep=keep)
        # scale first, then mask in place: twice as fast as x * mask, which casts the
        # boolean mask in a slow mixed-type loop
        y = x * x.dtype.type(self.scale)
        y *= keep
        return y

    def backward(self, g):
        if self.stream is not None:  # the same draws scale the gradient as scaled x
            return fused_dropout(g, self.p, self.scale, self.stream)
        gx = g * g.dtype.type(self.scale)
        gx *= self.keep
        return gx


KERNEL_SOURCE = pathlib.Path(__file__).with_name("dropout.cu")


def fused_dropout_wanted(p, x) -> bool:
    """Whether dropout with probability ``p`` of ``x`` runs in ops/dropout.cu: the kernel
    is switched on, x is a CuPy array, and p < 1 (p = 1 drops everything: the generic path)."""
    return p < 1 and use_fused_kernel("dropout", x)


def fused_dropout(x, p, scale, stream):
    """x * keep * scale in one kernel, keep drawn from the Philox ``stream`` (ops/dropout.cu)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    threshold = min(round(p * 2 ** 32), 2 ** 32 - 1)
    key0, key1, offset = stream
    launch_flat(KERNEL_SOURCE, "dropout", x, (x, np.int64(x.size), np.uint32(threshold), x.dtype.type(scale),
                                              np.uint32(key0), np.uint32(key1), np.uint64(offset), y),
                items_per_thread=4)
    return y


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0."""
    check_probability(p)
    if not training or p == 0:
        return as_tensors((x,))[0]
    return Dropout(p)(x)
