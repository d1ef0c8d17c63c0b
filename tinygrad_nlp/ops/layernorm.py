"""Layer normalisation over the last axis. Guide: docs/backward.md#layer-norm"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function


class LayerNorm(Function):
    """y = xhat * w + b with xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), the
    mean and the (biased) variance taken over the last axis, of width D.

    Backward, per row, with dxhat = dL/dxhat = g * w:
        dL/dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    the three terms being the path through xhat directly, through the mean, and through
    the variance (docs/backward.md derives each). dL/dw = sum over rows of g * xhat,
    dL/db = sum over rows of g.

    Saves: x, w, and per row the mean and rstd ((..., 1) each); xhat is recomputed in the
    backward rather than kept (one array of x's size fewer).
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
        xp = get_array_module(x)
        mean = x.mean(axis=-1, keepdims=True)                      # (..., 1)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)       # (..., 1), biased
        rstd = 1 / xp.sqrt(var + self.eps)                         # (..., 1)
        xhat = (x - mean) * rstd                                   # (..., D)
        self.save(x=x, weight=weight, mean=mean, rstd=rstd)
        return xhat * weight + bias                                # (..., D)

    def backward(self, g):
        xhat = (self.x - self.mean) * self.rstd                    # (..., D)
        dxhat = g * self.weight                                    # (..., D)
        direct = dxhat                                             # (..., D)
        through_mean = dxhat.mean(axis=-1, keepdims=True)          # (..., 1)
        through_variance = xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)  # (..., D)
        grad_x = self.rstd * (direct - through_mean - through_variance)
        rows = tuple(range(g.ndim - 1))                            # every axis but the last
        grad_weight = (g * xhat).sum(axis=rows)                    # (D,)
        grad_bias = g.sum(axis=rows)                               # (D,)
        return grad_x, grad_weight, grad_bias


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis, then scale by ``weight`` and shift by ``bias``."""
    return LayerNorm(eps)(x, weight, bias)
