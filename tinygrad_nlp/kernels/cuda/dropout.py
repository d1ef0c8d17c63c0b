"""Dropout as a CUDA kernel (dropout.cu) that draws its mask from a counter-based
generator (Philox, philox.cuh): equal to ``ops.dropout.Dropout`` for the mask it draws.
Nothing of the mask's size is stored: the forward keeps where the draw stands (the key,
the draw's number, this worker's first element) and the backward draws the same mask
again from it, in the same launch that scales the gradient (one read and one write each
way, no mask in memory). The mask is drawn per example, as the textbook's: element i of
the global batch is a function of the seed, the draw and i (``backend.philox_place``)."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from ...backend import get_array_module, kernels, philox_place
from ...ops.dropout import Dropout, keep_scale

SOURCE = pathlib.Path(__file__).with_name("dropout.cu")


class PhiloxMask:
    """A dropout draw kept as its place in the Philox generator, for a tensor whose first
    axis is this worker's examples, ``per_example`` elements each: ``apply`` draws the
    mask again each time, the same every time."""

    def __init__(self, p: float, per_example: int):
        self.p, self.scale, self.per_example = p, keep_scale(p), int(per_example)
        self.key0, self.key1, self.draw, self.first = philox_place(per_example)

    def apply(self, x, out=None):
        """x * mask / (1 - p), into ``out`` (which may be x) or a new array."""
        xp = get_array_module(x)
        x = xp.ascontiguousarray(x)
        y = xp.empty_like(x) if out is None or not out.flags.c_contiguous else out  # in place is safe: y[i] from x[i]
        threshold = min(round(self.p * 2 ** 32), 2 ** 32 - 1)
        kernels.launch_flat(SOURCE, "dropout", x,
                            (x, np.int64(x.size), np.uint32(threshold), x.dtype.type(self.scale), np.uint32(self.key0),
                             np.uint32(self.key1), np.uint32(self.draw), np.uint64(self.first), y), items_per_thread=4)
        if out is not None and y is not out:
            out[...] = y
            return out
        return y


@kernels.register(Dropout, device="cuda", kernel="dropout")
class DropoutKernel(Dropout):
    def suits(self, x):
        return kernels.suits_kernel(x) and self.p < 1 and self.rows is None  # p = 1: the textbook's all-False mask

    def forward(self, x):
        self.save(keep=PhiloxMask(self.p, math.prod(x.shape[1:])))
        return self.keep.apply(x)

    def backward(self, g):
        return self.keep.apply(g)
