"""Dropout as a CUDA kernel (dropout.cu) that draws its mask from a counter-based
generator (Philox, philox.cuh): equal to ``ops.dropout.Dropout`` for the mask it draws.
Nothing of the mask's size is stored: the forward keeps the generator's key and first
counter, and the backward draws the same mask again from them, in the same launch that
scales the gradient (one read and one write each way, no mask in memory)."""
from __future__ import annotations

import pathlib

import numpy as np

from ...backend import get_array_module, kernels, philox_stream
from ...ops.dropout import Dropout, keep_scale

SOURCE = pathlib.Path(__file__).with_name("dropout.cu")


class PhiloxMask:
    """A dropout draw kept as Philox streams, one per block of rows (the attention path
    applies a mask a batch block at a time): ``apply`` draws a block's mask from its
    stream each time, so every application of one block gives the same mask."""

    def __init__(self, p: float):
        self.p, self.scale, self.streams = p, keep_scale(p), {}

    def stream_of(self, rows: slice | None, size: int):
        start = None if rows is None else rows.start
        if start not in self.streams:
            self.streams[start] = philox_stream(size)
        return self.streams[start]

    def apply(self, x, rows=None, out=None):
        """x * mask / (1 - p) for the block of rows ``rows`` (a slice of the first axis;
        default: all), into ``out`` (which may be x) or a new array."""
        xp = get_array_module(x)
        x = xp.ascontiguousarray(x)
        y = xp.empty_like(x) if out is None or not out.flags.c_contiguous else out  # in place is safe: y[i] from x[i]
        threshold = min(round(self.p * 2 ** 32), 2 ** 32 - 1)
        key0, key1, offset = self.stream_of(rows, x.size)
        kernels.launch_flat(SOURCE, "dropout", x,
                            (x, np.int64(x.size), np.uint32(threshold), x.dtype.type(self.scale), np.uint32(key0),
                             np.uint32(key1), np.uint64(offset), y), items_per_thread=4)
        if out is not None and y is not out:
            out[...] = y
            return out
        return y


@kernels.register(Dropout, device="cuda", kernel="dropout")
class DropoutKernel(Dropout):
    def suits(self, x):
        return kernels.suits_kernel(x) and self.p < 1  # p = 1: the textbook's all-False mask

    def forward(self, x):
        self.save(keep=PhiloxMask(self.p))
        return self.keep.apply(x)

    def backward(self, g):
        return self.keep.apply(g)
