"""Inverted dropout. Guide: docs/backward.md#dropout"""
from __future__ import annotations

import math

from .. import backend
from ..backend import get_array_module
from ..errors import ArgumentError
from ..tensor import Function


def check_p(p: float, what: str = "dropout") -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"{what}: probability p must be in [0, 1], got {p}")
    return p


def keep_mask(xp, shape, p: float, dtype):
    """A boolean mask, True (kept) with probability 1 - p, from the seeded backend RNG.

    On the CPU it compares 16-bit random numbers with round(p * 2^16), so the drop rate
    is p to within 2^-17; the 16-bit numbers are the four quarters of the generator's
    raw 64-bit outputs (five times faster than drawing floats)."""
    if xp.__name__ == "numpy":
        threshold = int(round(p * 65536))
        if threshold >= 65536:
            return xp.zeros(shape, dtype=bool)
        n = math.prod(shape)
        raw = backend.rng(xp).bit_generator.random_raw(-(-n // 4))
        return (raw.view(xp.uint16)[:n] >= threshold).reshape(shape)
    return backend.uniform(xp, shape, dtype) >= p


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p). The forward saves
    the boolean mask (1 byte per element). With p = 1 everything is dropped and y = 0.
    """

    def __init__(self, p):
        self.p = check_p(p)

    def forward(self, x):
        xp = get_array_module(x)
        self.keep = keep_mask(xp, x.shape, self.p, x.dtype)
        self.scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        # scale first, then mask in place: twice as fast as x * mask, which casts the
        # boolean mask in a slow mixed-type loop
        y = x * x.dtype.type(self.scale)
        y *= self.keep
        return y

    def backward(self, g):
        gx = g * g.dtype.type(self.scale)
        gx *= self.keep
        return gx
