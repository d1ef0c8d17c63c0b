"""Layer normalisation over the last axis. Guide: docs/backward.md#layer-norm
Each pass has a generic path and a fused kernel (layernorm.cu, one thread block per
row); ``backend.kernels.dispatch`` chooses."""
from __future__ import annotations

import pathlib

import numpy as np

from ..backend import get_array_module, kernels
from ..errors import ShapeError
from ..tensor import Function
from .rowwise import leading_sum, row_mean


def _forward_generic(x, weight, bias, eps):
    """y, mean, rstd of layer norm in array code (mean and rstd shaped (..., 1))."""
    xp = get_array_module(x, weight, bias)
    # Shifted by each row's first value before averaging, so a constant row centres
    # to exact zeros (its output is exactly the bias, even at 1e4 in float32) and
    # large offsets do not cost the variance its precision.
    shift = x[..., :1]
    centred = x - shift
    offset = row_mean(centred)
    centred -= offset
    mean = shift + offset
    var = row_mean(xp.square(centred))
    rstd = 1.0 / xp.sqrt(var + eps)
    centred *= rstd
    centred *= weight
    centred += bias
    return centred, mean, rstd


def _backward_generic(g, x, weight, mean, rstd):
    """dL/dx, dL/dw, dL/db of layer norm in array code."""
    # mean(dxhat) = g @ w / D and mean(dxhat * xhat) = (g * xhat) @ w / D: two
    # matrix-vector products instead of two more (N, D) temporaries
    xhat, g_xhat = _xhat_and_g_xhat(g, x, mean, rstd)
    grad_weight, grad_bias = leading_sum(g_xhat), leading_sum(g)
    w_mean = weight / weight.shape[0]
    mean_dxhat = (g @ w_mean)[..., None]
    mean_dxhat_xhat = (g_xhat @ w_mean)[..., None]
    grad_x = g * weight
    grad_x -= mean_dxhat
    xhat *= mean_dxhat_xhat
    grad_x -= xhat
    grad_x *= rstd
    return grad_x, grad_weight, grad_bias


def _xhat_and_g_xhat(g, x, mean, rstd):
    xhat = x - mean
    xhat *= rstd
    return xhat, g * xhat


# -- the fused CUDA kernels (ops/layernorm.cu), one thread block per row ----------------
KERNEL_SOURCE = pathlib.Path(__file__).with_name("layernorm.cu")


def _forward_kernel(x, weight, bias, eps):
    """y, mean, rstd of layer norm in one kernel (mean and rstd shaped (..., 1))."""
    xp = get_array_module(x)
    x, weight, bias = (xp.ascontiguousarray(a) for a in (x, weight, bias))
    width = x.shape[-1]
    y = xp.empty_like(x)
    mean, rstd = (xp.empty(x.shape[:-1] + (1,), dtype=x.dtype) for _ in range(2))
    kernels.launch_per_row(KERNEL_SOURCE, "layer_norm_forward", x,
                           (x, weight, bias, np.int64(width), x.dtype.type(eps), y, mean, rstd))
    return y, mean, rstd


def _backward_kernel(g, x, weight, mean, rstd):
    """dL/dx of layer norm in one kernel; dL/dw and dL/db as the generic path."""
    xp = get_array_module(g)
    _, g_xhat = _xhat_and_g_xhat(g, x, mean, rstd)
    grad_weight, grad_bias = leading_sum(g_xhat), leading_sum(g)
    g, x, weight = (xp.ascontiguousarray(a) for a in (g, x, weight))
    grad_x = xp.empty_like(g)
    kernels.launch_per_row(KERNEL_SOURCE, "layer_norm_backward", g,
                           (g, x, weight, xp.ascontiguousarray(mean), xp.ascontiguousarray(rstd),
                            np.int64(g.shape[-1]), grad_x))
    return grad_x, grad_weight, grad_bias


_has_rows = lambda a, *_: a.size > 0
layer_norm_forward = kernels.dispatch("layer_norm", generic=_forward_generic, kernel=_forward_kernel, applies=_has_rows)
layer_norm_backward = kernels.dispatch("layer_norm", generic=_backward_generic, kernel=_backward_kernel,
                                       applies=_has_rows)


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
        y, mean, rstd = layer_norm_forward(x, weight, bias, self.eps)
        self.save(x=x, weight=weight, mean=mean, rstd=rstd)
        return y

    def backward(self, g):
        return layer_norm_backward(g, self.x, self.weight, self.mean, self.rstd)


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis, then scale by ``weight`` and shift by ``bias``."""
    return LayerNorm(eps)(x, weight, bias)
