"""Root-mean-square normalisation over the last axis (Llama's norm). Guide: docs/backward.md#rmsnorm"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function


class RMSNorm(Function):
    """y = xhat * w with xhat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps), the mean taken
    over the last axis, of width D. Layer norm without the mean: nothing is subtracted
    and there is no bias.

    Backward, per row, with dxhat = dL/dxhat = g * w. By the product rule on
    xhat_i = x_i rstd, and d rstd / d x_j = -rstd^3 x_j / D (from d mean(x^2) / d x_j = 2 x_j / D),
        d xhat_i / d x_j = rstd (delta_ij - xhat_i xhat_j / D),
    and multiplying by dxhat_i and summing over i:
        dL/dx = rstd * (dxhat - xhat * mean(dxhat * xhat))
    the two terms being the path through xhat directly and through the mean square
    (layer norm's formula without its path through the mean; docs/backward.md derives it).
    dL/dw = sum over rows of g * xhat.

    Saves: x, w and per row rstd ((..., 1)); xhat is recomputed in the backward. It
    computes in the input's dtype (float32 or float64); transformers' LlamaRMSNorm
    computes in float32 and casts back, which for float32 inputs is the same thing.
    """

    floating = True

    def __init__(self, eps=1e-6):
        self.eps = eps

    def check(self, x, weight):
        D = x.shape[-1] if x.ndim else 0
        if x.ndim == 0 or tuple(weight.shape) != (D,):
            raise ShapeError(f"rms_norm: input {tuple(x.shape)} normalises over width {D}, "
                             f"but weight is {tuple(weight.shape)}")

    def forward(self, x, weight):
        xp = get_array_module(x)
        rstd = 1 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps)  # (..., 1)
        self.save(x=x, weight=weight, rstd=rstd)
        return x * rstd * weight                                   # (..., D)

    def backward(self, g):
        xhat = self.x * self.rstd                                  # (..., D)
        dxhat = g * self.weight                                    # (..., D)
        direct = dxhat                                             # (..., D)
        through_mean_square = xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)  # (..., D)
        grad_x = self.rstd * (direct - through_mean_square)
        rows = tuple(range(g.ndim - 1))                            # every axis but the last
        grad_weight = (g * xhat).sum(axis=rows)                    # (D,)
        return grad_x, grad_weight


def rms_norm(x, weight, eps=1e-6):
    """x / sqrt(mean(x^2 over the last axis) + eps) * weight, as Llama's RMSNorm and
    PyTorch's ``rms_norm`` (whose default eps differs: pass it)."""
    return RMSNorm(eps)(x, weight)
