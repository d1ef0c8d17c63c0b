"""Inverted dropout. Guide: docs/backward.md#dropout"""
from __future__ import annotations

from ..backend import get_array_module, keep_mask
from ..tensor import Function, as_tensors
from .checks import check_probability


def keep_scale(p: float) -> float:
    """1 / (1 - p), what a kept element is multiplied by (0 when p = 1: nothing is kept)."""
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


class Dropout(Function):
    """y = x * m / (1 - p), with m_i ~ Bernoulli(1 - p) drawn once in the forward.

    y is linear in x with a fixed diagonal, so dL/dx = g * m / (1 - p): the same draws
    scale the gradient as they scaled x. With p = 1 everything is dropped and y = 0.

    m is drawn per example: x's first axis is this worker's examples of the global batch,
    and each example's mask is the same however the batch is shared among workers
    (``backend.keep_mask``). Rows packed from a (B, T) batch (``rows``, flat positions,
    and ``batch_shape``) get the mask of their positions in the batch's draw.

    Saves: the boolean mask m (one byte per element). The CUDA path (kernels/cuda)
    keeps only where the draw stands in the random generator and draws m again in the
    backward.
    """

    floating = True

    def __init__(self, p, rows=None, batch_shape=None):
        self.p = check_probability(p)
        self.rows, self.batch_shape = rows, batch_shape

    def forward(self, x):
        keep = self.draw_keep(get_array_module(x), x.shape)  # m, True = kept
        self.save(keep=keep)
        return x * keep * keep_scale(self.p)

    def backward(self, g):
        return g * self.keep * keep_scale(self.p)

    def draw_keep(self, xp, shape):
        """m of x's ``shape``: the run's next draw for these examples, or, for packed
        rows, the draw of their (B, T, ...) batch at the rows' positions."""
        if self.rows is None:
            return keep_mask(xp, shape, self.p)
        whole = keep_mask(xp, (*self.batch_shape, *shape[1:]), self.p)
        return whole.reshape(-1, *shape[1:])[self.rows]


def dropout(x, p=0.5, training=True, rows=None, batch_shape=None):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0. ``rows`` (flat
    positions) and ``batch_shape`` (B, T): x's rows are those positions of a (B, T)
    batch, packed, and each gets the mask of its position."""
    check_probability(p)
    if not training or p == 0:
        return as_tensors((x,))[0]
    return Dropout(p, rows, batch_shape)(x)
