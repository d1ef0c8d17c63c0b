"""Dropout on the CPU: equal to ``ops.dropout.Dropout`` (the same mask, the same
values), faster: x is scaled by 1/(1 - p) first and then masked in place, two float
passes, instead of ``x * mask``, which casts the boolean mask in a slow mixed-type loop
and makes a second new array."""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.dropout import Dropout, keep_scale


def apply_mask(x, keep, scale, out=None):
    """x * keep * scale (into ``out``, which may be x): scaled first, then masked in place."""
    y = np.multiply(x, x.dtype.type(scale), out=out)
    y *= keep
    return y


@kernels.register(Dropout, device="cpu")
class DropoutInPlace(Dropout):
    def forward(self, x):
        keep = self.draw_keep(np, x.shape)
        self.save(keep=keep)
        return apply_mask(x, keep, keep_scale(self.p))

    def backward(self, g):
        return apply_mask(g, self.keep, keep_scale(self.p))
