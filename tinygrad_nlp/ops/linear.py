"""Matrix products: batched ``matmul`` and ``linear`` (x @ W.T + b, W of shape (out, in),
with an optional activation).
Guide: docs/backward.md#linear
"""
from __future__ import annotations

import math
import pathlib

import numpy as np

from ..backend import get_array_module, kernels
from ..errors import ShapeError
from ..tensor import Function
from .checks import broadcast_shape
from .elementwise import ACTIVATIONS, activation_backward, check_activation, save_activation, unbroadcast
from ..kernels.cpu.rowwise import leading_sum


def _as_rows(x):
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
    y = act(x W^T + b).

    With the leading axes flattened into rows (X is (N, in), G is (N, out)):
    dL/dX = G W, dL/dW = G^T X, dL/db = sum of G over rows.
    With an activation, Z = X W^T + b and G_Z = G * act'(Z) takes G's place in all three
    (each activation's act' as its own op has it). One node instead of two, and on the GPU
    the bias and the activation are one kernel each way (ops/bias_activation.cu), which
    keeps Z instead of what the activation op would keep.
    """

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
        y = _as_rows(x) @ weight.T
        if self.activation is not None and bias is not None:
            y = bias_activation(self, y, bias)
        elif bias is not None:
            y += bias
        elif self.activation is not None:
            y = save_activation(self, self.activation, y)
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        x, g2 = _as_rows(self.x), _as_rows(g)
        if self.activation is not None:
            g2 = bias_activation_backward(self, g2)
        grad_x = (g2 @ self.weight).reshape(self.x.shape)
        grad_weight = g2.T @ x
        if self.has_bias:
            return grad_x, grad_weight, leading_sum(g2)
        return grad_x, grad_weight


# -- the bias and the activation: array code, or one kernel each way --------------------
def _bias_activation_generic(node, y, bias):
    y += bias
    return save_activation(node, node.activation, y)


def _bias_activation_backward_generic(node, g):
    return activation_backward(node, node.activation, g)


KERNEL_SOURCE = pathlib.Path(__file__).parents[1] / "kernels" / "cuda" / "bias_activation.cu"


def _bias_activation_kernel(node, z, bias):
    """act(z + bias) in one launch (ops/bias_activation.cu), which leaves z + bias in z:
    the node saves it as ``pre_activation``."""
    xp = get_array_module(z)
    y, bias = xp.empty_like(z), xp.ascontiguousarray(bias)
    node.save(pre_activation=z)
    kind = np.int32(ACTIVATIONS[node.activation].kernel_kind)
    kernels.launch_flat(KERNEL_SOURCE, "bias_activation", y, (z, bias, np.int64(y.size), np.int64(y.shape[1]), kind, y))
    return y


def _bias_activation_backward_kernel(node, g):
    """g * act'(z) in one launch; over the saved z when no second backward will read it."""
    xp, z = get_array_module(g), node.pre_activation
    g = xp.ascontiguousarray(g)
    grad_z = z if node.may_overwrite_saved else xp.empty_like(z)  # the kernel reads z[i], then writes it
    kind = np.int32(ACTIVATIONS[node.activation].kernel_kind)
    kernels.launch_flat(KERNEL_SOURCE, "activation_backward", z, (g, z, np.int64(z.size), kind, grad_z))
    return grad_z


bias_activation = kernels.dispatch("bias_activation", generic=_bias_activation_generic, kernel=_bias_activation_kernel)
# the backward takes the path the forward took: the kernel's saved pre_activation, or the activation's own arrays
bias_activation_backward = kernels.dispatch(
    "bias_activation", generic=_bias_activation_backward_generic, kernel=_bias_activation_backward_kernel,
    applies=lambda node, g: "pre_activation" in node.saved_names)


# -- the public functions ------------------------------------------------------------
def matmul(a, b):
    """a @ b, as ``np.matmul`` (batched over leading axes, broadcasting them)."""
    return MatMul()(a, b)


def linear(x, weight, bias=None, activation=None):
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch, then
    ``activation`` if given: "relu", "gelu" (exact, through erf) or "gelu_tanh" (the
    tanh form), the same as ``relu(linear(x, weight, bias))`` and ``gelu(...)`` but one
    op."""
    return Linear(activation)(x, weight, bias)
