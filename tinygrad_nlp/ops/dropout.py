"""Inverted dropout. Guide: docs/backward.md#dropout"""
from __future__ import annotations

from ..backend import get_array_module, keep_mask
from ..tensor import Function, as_tensors
from .checks import check_probability


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p). The forward saves
    the boolean mask (1 byte per element). With p = 1 everything is dropped and y = 0.
    """

    floating = True

    def __init__(self, p):
        self.p = check_probability(p)
        self.scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)

    def forward(self, x):
        keep = keep_mask(get_array_module(x), x.shape, self.p)
        self.save(keep=keep)
        # scale first, then mask in place: twice as fast as x * mask, which casts the
        # boolean mask in a slow mixed-type loop
        y = x * x.dtype.type(self.scale)
        y *= keep
        return y

    def backward(self, g):
        gx = g * g.dtype.type(self.scale)
        gx *= self.keep
        return gx


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0."""
    check_probability(p)
    if not training or p == 0:
        return as_tensors((x,))[0]
    return Dropout(p)(x)
