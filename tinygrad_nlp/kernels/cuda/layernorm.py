"""Layer norm as CUDA kernels (layernorm.cu): equal to ``ops.layernorm.LayerNorm``.

One thread block per row reads the row once for its mean and variance and writes y in
the same launch (the textbook's six array passes, each a kernel launch and a round
trip to memory, become one); the backward likewise makes dL/dx in one launch. The
weight and bias gradients are sums over rows, left to CuPy's reductions.
"""
from __future__ import annotations

import pathlib

import numpy as np

from ...backend import get_array_module, kernels
from ...ops.layernorm import LayerNorm

SOURCE = pathlib.Path(__file__).with_name("layernorm.cu")


@kernels.register(LayerNorm, device="cuda", kernel="layer_norm")
class LayerNormKernel(LayerNorm):
    def suits(self, x, weight, bias):
        return kernels.suits_kernel(x, weight, bias)

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        x, weight, bias = (xp.ascontiguousarray(a) for a in (x, weight, bias))
        y = xp.empty_like(x)
        mean, rstd = (xp.empty(x.shape[:-1] + (1,), dtype=x.dtype) for _ in range(2))
        kernels.launch_per_row(SOURCE, "layer_norm_forward", x,
                               (x, weight, bias, np.int64(x.shape[-1]), x.dtype.type(self.eps), y, mean, rstd))
        self.save(x=x, weight=weight, mean=mean, rstd=rstd)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        g = xp.ascontiguousarray(g)
        rows = tuple(range(g.ndim - 1))
        grad_weight = (g * ((self.x - self.mean) * self.rstd)).sum(axis=rows)
        grad_bias = g.sum(axis=rows)
        grad_x = xp.empty_like(g)
        kernels.launch_per_row(SOURCE, "layer_norm_backward", g,
                               (g, self.x, self.weight, self.mean, self.rstd, np.int64(g.shape[-1]), grad_x))
        return grad_x, grad_weight, grad_bias
