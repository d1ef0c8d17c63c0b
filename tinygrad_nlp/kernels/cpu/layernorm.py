"""Layer norm on the CPU: equal to ``ops.layernorm.LayerNorm``, faster.

- Row means are BLAS matrix-vector products (``rowwise.row_mean``), and the backward's
  two row means, mean(dxhat) and mean(dxhat * xhat), are g @ (w / D) and
  (g * xhat) @ (w / D): dxhat = g * w is never formed for them.
- Every pass after the first writes into the array it reads (``-=``, ``*=``), so a pass
  allocates nothing and touches one array instead of three.
- The forward shifts each row by its first value before averaging, so a constant row
  centres to exact zeros and a large offset does not cost the variance its precision.
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.layernorm import LayerNorm
from .rowwise import leading_sum, row_mean


@kernels.register(LayerNorm, device="cpu")
class LayerNormInPlace(LayerNorm):
    def forward(self, x, weight, bias):
        shift = x[..., :1]
        centred = x - shift
        offset = row_mean(centred)
        centred -= offset
        mean = shift + offset
        rstd = 1.0 / np.sqrt(row_mean(centred * centred) + self.eps)
        centred *= rstd
        centred *= weight
        centred += bias
        self.save(x=x, weight=weight, mean=mean, rstd=rstd)
        return centred

    def backward(self, g):
        xhat = self.x - self.mean
        xhat *= self.rstd
        g_xhat = g * xhat
        grad_weight, grad_bias = leading_sum(g_xhat), leading_sum(g)
        w_over_d = self.weight / self.weight.shape[0]
        mean_dxhat = (g @ w_over_d)[..., None]
        mean_dxhat_xhat = (g_xhat @ w_over_d)[..., None]
        grad_x = g * self.weight
        grad_x -= mean_dxhat
        xhat *= mean_dxhat_xhat
        grad_x -= xhat
        grad_x *= self.rstd
        return grad_x, grad_weight, grad_bias
