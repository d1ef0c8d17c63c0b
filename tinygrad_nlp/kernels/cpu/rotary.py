"""Rotary position embeddings on the CPU: equal to ``ops.rotary.RotaryEmbedding``, faster.

The textbook builds rotate_half(x) (or its transpose) as a new array by concatenating
two halves, then multiplies and adds whole arrays. Here the output starts as x cos and
each half takes its product with the other half of x in place, so no rotated copy of x
(or of the gradient) is made:
    y[:h] = x[:h] cos[:h] - x[h:] sin[:h],   y[h:] = x[h:] cos[h:] + x[:h] sin[h:],
and the backward is the rotation back, dx[:h] += (g sin)[h:], dx[h:] -= (g sin)[:h].
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.rotary import RotaryEmbedding


@kernels.register(RotaryEmbedding, device="cpu")
class RotaryEmbeddingInPlace(RotaryEmbedding):
    def forward(self, x):
        cos, sin = self.angles(x)
        self.save(cos=cos, sin=sin)
        half = x.shape[-1] // 2
        y = x * cos
        y[..., :half] -= x[..., half:] * sin[..., :half]
        y[..., half:] += x[..., :half] * sin[..., half:]
        return y

    def backward(self, g):
        half = g.shape[-1] // 2
        along = g * self.sin
        grad = np.multiply(g, self.cos)
        grad[..., :half] += along[..., half:]
        grad[..., half:] -= along[..., :half]
        return grad
