"""Matrix products: batched ``matmul`` and ``linear`` (x @ W.T + b, W of shape (out, in),
with an optional activation).
Guide: docs/backward.md#linear
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..tensor import Function
from .activations import ACTIVATIONS, activation_backward, check_activation, save_activation
from .checks import broadcast_shape
from .elementwise import unbroadcast


def as_rows(x):
    """x (..., n) as a matrix (rows, n); the row count is explicit, as -1 is ambiguous
    for empty arrays."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _swap_last(x):
    return x.swapaxes(-1, -2)


class MatMul(Function):
    """y = a @ b over the last two axes, broadcasting the leading (batch) axes.

    For one matrix product y = a b, dL/da = g b^T and dL/db = a^T g; batch axes that
    were broadcast are summed away (``unbroadcast``). 1-D inputs are promoted as NumPy
    does (a vector on the left is a row, on the right a column) and the promoted axis
    is removed again from the gradients.
    """

    def check(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError(f"matmul: scalars are not allowed, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ShapeError(f"matmul: inner dimensions differ: {tuple(a.shape)} @ {tuple(b.shape)}")
        if a.ndim > 2 or b.ndim > 2:
            broadcast_shape("matmul", a.shape[:-2], b.shape[:-2])

    def forward(self, a, b):
        self.save(a=a, b=b)
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # a dot product: y = sum a_i b_i
            return g * b, g * a
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            g = g[..., None, :]
        if b.ndim == 1:
            g = g[..., None]
        ga = g @ _swap_last(b2)
        gb = _swap_last(a2) @ g
        ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


class Linear(Function):
    """y = x W^T + b, with x (..., in), W (out, in), b (out,); with an activation,
    y = act(z), z = x W^T + b.

    With the leading axes flattened into rows (X is (N, in), G is (N, out)):
    dL/dX = G W, dL/dW = G^T X, dL/db = sum of G over rows.
    With an activation, G_z = G * act'(z) takes G's place in all three (each
    activation's act' as its own op has it, ops/activations.py). One node instead of two.

    Saves: x and W; with an activation, what the activation saves (ops/activations.py).
    """

    table = ACTIVATIONS  # each activation's math (a faster path may hold faster forms of the same)

    def __init__(self, activation=None):
        self.activation = check_activation(activation, "linear", optional=True)

    def check(self, x, weight, bias=None):
        if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ShapeError(
                f"linear: input {tuple(x.shape)} does not fit weight {tuple(weight.shape)} "
                f"(expected input (..., {weight.shape[-1] if weight.ndim else '?'}), weight (out, in))"
            )
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ShapeError(f"linear: bias shape {tuple(bias.shape)} does not fit weight {tuple(weight.shape)}")

    def forward(self, x, weight, bias=None):
        self.has_bias = bias is not None
        self.save(x=x, weight=weight)
        z = as_rows(x) @ weight.T                                   # (N, out)
        if bias is not None:
            z = z + bias
        if self.activation is not None:
            z = save_activation(self, self.table[self.activation], z)  # y = act(z)
        return z.reshape(x.shape[:-1] + (weight.shape[0],))          # (..., out)

    def backward(self, g):
        g = as_rows(g)                                              # G (N, out)
        if self.activation is not None:
            g = activation_backward(self, self.table[self.activation], g)  # G_z = G * act'(z)
        grad_x = (g @ self.weight).reshape(self.x.shape)            # dL/dX = G W
        grad_weight = g.T @ as_rows(self.x)                         # dL/dW = G^T X  (out, in)
        if self.has_bias:
            return grad_x, grad_weight, g.sum(axis=0)               # dL/db = sum of G over rows
        return grad_x, grad_weight


# -- the public functions ------------------------------------------------------------
def matmul(a, b):
    """a @ b, as ``np.matmul`` (batched over leading axes, broadcasting them)."""
    return MatMul()(a, b)


def linear(x, weight, bias=None, activation=None):
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch, then
    ``activation`` if given: "relu", "gelu" (exact, through erf), "gelu_tanh" (the
    tanh form) or "silu", the same as ``relu(linear(x, weight, bias))``, ``gelu(...)``
    and ``silu(...)`` but one op."""
    return Linear(activation)(x, weight, bias)
