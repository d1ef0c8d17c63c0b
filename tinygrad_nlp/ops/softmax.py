"""softmax and log_softmax along an axis, and ``softmax_of``, the last-axis softmax that
attention reuses (a row that is all -inf gives zeros). Each subtracts the row maximum
first, so logits of +-1e4 stay finite. Cross-entropy, log-softmax with a loss, is in
cross_entropy.py; faster ways to compute these ops are in kernels/cpu/softmax.py and
kernels/cuda/softmax.py. Guide: docs/backward.md#softmax
"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function


def check_axis(op, x, axis):
    """A 0-d input is one row of one element along axis 0 or -1 (as PyTorch takes it)."""
    ndim = max(x.ndim, 1)
    if not -ndim <= axis < ndim or (x.ndim and x.shape[axis] == 0):
        raise ShapeError(f"{op}: axis {axis} is out of range or empty for input {tuple(x.shape)}")


def softmax_of(x):
    """softmax over the last axis, where a row that is all -inf (a query whose keys are
    all masked) gives all zeros instead of NaN."""
    xp = get_array_module(x)
    m = x.max(axis=-1, keepdims=True)                    # (..., 1)
    m = xp.where(m == -xp.inf, 0, m)                     # an all -inf row: shift 0, its exponentials 0
    e = xp.exp(x - m)                                    # (..., C)
    total = e.sum(axis=-1, keepdims=True)                # (..., 1); 0 only for an all -inf row
    return e / xp.where(total == 0, 1, total)            # (..., C)


def log_softmax_of(x, axis=-1):
    """x - logsumexp(x) along ``axis``, the maximum subtracted first (no exponent > 0)."""
    xp = get_array_module(x)
    m = x.max(axis=axis, keepdims=True)                  # x's shape, 1 along axis
    return x - m - xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along ``axis``, computed as exp(x - m) / sum(exp(x - m))
    with m the maximum along the axis (the same y; no exponential above 1).

    The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so the vector-Jacobian product is
    dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i):
    ``y * (g - sum(g * y))``. Only y is saved.
    """

    floating = True

    def __init__(self, axis=-1):
        self.axis = axis

    def check(self, x):
        check_axis("softmax", x, self.axis)

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))   # x's shape, each <= 1
        y = e / e.sum(axis=self.axis, keepdims=True)             # x's shape
        self.save(y=y)
        return y

    def backward(self, g):
        y = self.y                                               # g's shape
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``, with logsumexp(x) = m + log(sum(exp(x - m)))
    and m the maximum along the axis.

    dy_i/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax(x) * sum(g), with
    softmax(x) = exp(y) recomputed from the saved output.
    """

    floating = True

    def __init__(self, axis=-1):
        self.axis = axis

    def check(self, x):
        check_axis("log_softmax", x, self.axis)

    def forward(self, x):
        y = log_softmax_of(x, self.axis)                         # x's shape
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        return g - xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)
