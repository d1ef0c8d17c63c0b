"""Inverted dropout. Guide: docs/backward.md#dropout"""
from __future__ import annotations

from ..backend import get_array_module, keep_mask
from ..tensor import Function, as_tensors
from .checks import check_probability


def keep_scale(p: float) -> float:
    """1 / (1 - p), what a kept element is multiplied by (0 when p = 1: nothing is kept)."""
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p): the same draws
    scale the gradient as they scaled x. With p = 1 everything is dropped and y = 0.

    Saves: the boolean mask m (one byte per element). The CUDA path (kernels/cuda)
    keeps only the random generator's key and counter and draws m again in the backward.
    """

    floating = True

    def __init__(self, p):
        self.p = check_probability(p)

    def forward(self, x):
        keep = keep_mask(get_array_module(x), x.shape, self.p)  # m, True = kept
        self.save(keep=keep)
        return x * keep * keep_scale(self.p)

    def backward(self, g):
        return g * self.keep * keep_scale(self.p)


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0."""
    check_probability(p)
    if not training or p == 0:
        return as_tensors((x,))[0]
    return Dropout(p)(x)
