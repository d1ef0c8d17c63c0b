"""Layer normalisation over the last axis. Guide: docs/backward.md#layer-norm
On the GPU, with ``backend.use_fused_kernel("layer_norm", ...)``, each pass is one kernel
of ``layernorm.cu``."""
from __future__ import annotations

import pathlib

import numpy as np

from ..backend import get_array_module, launch_per_row, use_fused_kernel
from ..errors import ShapeError
from ..tensor import Function
from .rowwise import leading_sum, row_mean


class LayerNorm(Function):
    """y = xhat * w + b with xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), the
    mean and (biased) variance taken over the last axis of width D.

    Backward, per row (dxhat = g * w):
        dL/dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    the three terms being the direct path, the path through the mean, and the path
    through the variance. dL/dw = sum over rows of g * xhat, dL/db = sum of g.
    The forward saves only the per-row mean and rstd (plus a reference to x, which the
    graph holds anyway); xhat is recomputed in the backward.
    """

    floating = True

    def __init__(self, eps=1e-5):
        self.eps = eps

    def check(self, x, weight, bias):
        D = x.shape[-1] if x.ndim else 0
        if x.ndim == 0 or tuple(weight.shape) != (D,) or tuple(bias.shape) != (D,):
            raise ShapeError(
                f"layer_norm: input {tuple(x.shape)} normalises over width {D}, but weight is "
                f"{tuple(weight.shape)} and bias is {tuple(bias.shape)}"
            )

    def forward(self, x, weight, bias):
        xp = get_array_module(x, weight, bias)
        if x.size and use_fused_kernel("layer_norm", x, weight, bias):
            y, mean, rstd = fused_forward(x, weight, bias, self.eps)
            self.save(x=x, weight=weight, mean=mean, rstd=rstd)
            return y
        # Shifted by each row's first value before averaging, so a constant row centres
        # to exact zeros (its output is exactly the bias, even at 1e4 in float32) and
        # large offsets do not cost the variance its precision.
        shift = x[..., :1]
        centred = x - shift
        offset = row_mean(centred)
        centred -= offset
        mean = shift + offset
        var = row_mean(xp.square(centred))
        rstd = 1.0 / xp.sqrt(var + self.eps)
        self.save(x=x, weight=weight, mean=mean, rstd=rstd)
        centred *= rstd
        centred *= weight
        centred += bias
        return centred

    def backward(self, g):
        # mean(dxhat) = g @ w / D and mean(dxhat * xhat) = (g * xhat) @ w / D: two
        # matrix-vector products instead of two more (N, D) temporaries
        w = self.weight
        xhat = self.x - self.mean
        xhat *= self.rstd
        g_xhat = g * xhat
        grad_weight = leading_sum(g_xhat)
        grad_bias = leading_sum(g)
        if g.size and use_fused_kernel("layer_norm", g, self.x, w):
            return fused_backward(g, self.x, w, self.mean, self.rstd), grad_weight, grad_bias
        w_mean = w / w.shape[0]
        mean_dxhat = (g @ w_mean)[..., None]
        mean_dxhat_xhat = (g_xhat @ w_mean)[..., None]
        grad_x = g * w
        grad_x -= mean_dxhat
        xhat *= mean_dxhat_xhat
        grad_x -= xhat
        grad_x *= self.rstd
        return grad_x, grad_weight, grad_bias


# -- the fused CUDA kernels (ops/layernorm.cu), one thread block per row ----------------
KERNEL_SOURCE = pathlib.Path(__file__).with_name("layernorm.cu")


def fused_forward(x, weight, bias, eps):
    """y, mean, rstd of layer norm in one kernel (mean and rstd shaped (..., 1))."""
    xp = get_array_module(x)
    x, weight, bias = (xp.ascontiguousarray(a) for a in (x, weight, bias))
    width = x.shape[-1]
    y = xp.empty_like(x)
    mean, rstd = (xp.empty(x.shape[:-1] + (1,), dtype=x.dtype) for _ in range(2))
    launch_per_row(KERNEL_SOURCE, "layer_norm_forward", x, (x, weight, bias, np.int64(width), x.dtype.type(eps), y, mean, rstd))
    return y, mean, rstd


def fused_backward(g, x, weight, mean, rstd):
    """dL/dx of layer norm in one kernel."""
    xp = get_array_module(g)
    g, x, weight = (xp.ascontiguousarray(a) for a in (g, x, weight))
    grad_x = xp.empty_like(g)
    launch_per_row(KERNEL_SOURCE, "layer_norm_backward", g,
                   (g, x, weight, xp.ascontiguousarray(mean), xp.ascontiguousarray(rstd), np.int64(g.shape[-1]), grad_x))
    return grad_x


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis, then scale by ``weight`` and shift by ``bias``."""
    return LayerNorm(eps)(x, weight, bias)
