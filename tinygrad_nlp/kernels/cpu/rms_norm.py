"""RMSNorm on the CPU: equal to ``ops.rms_norm.RMSNorm``, faster.

- Row means are BLAS matrix-vector products (``rowwise.row_mean``), and the backward's
  mean(dxhat * xhat) is (g * xhat) @ (w / D): dxhat = g * w is never formed for it.
- Every pass after the first writes into the array it reads, so a pass allocates
  nothing and touches one array instead of three (as kernels/cpu/layernorm.py).
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.rms_norm import RMSNorm
from .rowwise import leading_sum, row_mean


@kernels.register(RMSNorm, device="cpu")
class RMSNormInPlace(RMSNorm):
    def forward(self, x, weight):
        y = x * x
        rstd = row_mean(y)
        rstd += self.eps
        np.sqrt(rstd, out=rstd)
        np.reciprocal(rstd, out=rstd)
        self.save(x=x, weight=weight, rstd=rstd)
        np.multiply(x, rstd, out=y)
        y *= weight
        return y

    def backward(self, g):
        xhat = self.x * self.rstd
        g_xhat = g * xhat
        grad_weight = leading_sum(g_xhat)
        mean_dxhat_xhat = (g_xhat @ (self.weight / self.weight.shape[0]))[..., None]
        grad_x = np.multiply(g, self.weight, out=g_xhat)
        xhat *= mean_dxhat_xhat
        grad_x -= xhat
        grad_x *= self.rstd
        return grad_x, grad_weight
