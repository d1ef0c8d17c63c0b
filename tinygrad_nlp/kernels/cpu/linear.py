"""The linear layer and the activations on the CPU: equal to ``ops.linear.Linear`` and
``ops.activations``' ops, faster by writing each pass into an array already made.

- The bias is added into the product's own array, and its gradient, a sum over rows,
  is a BLAS product ones @ G (``rowwise.leading_sum``).
- GELU's tanh form runs its dozen elementwise steps in two arrays it reuses (``x ** 3``
  would take NumPy's general power loop; x * x * x into the same buffer does not), and
  the exact GELU forms dy/dx = Phi + x phi in phi's own array.
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels, normal_cdf
from ...ops.activations import ACTIVATIONS, GELU, GELU_C, Activation, GELUTanh, activation_backward, save_activation
from ...ops.linear import Linear, as_rows
from .rowwise import leading_sum


def gelu_tanh_forward(x, keep=True):
    u = np.multiply(x, x, out=np.empty_like(x))
    u *= x.dtype.type(0.044715)
    u += 1
    u *= x
    u *= x.dtype.type(GELU_C)  # u = c (x + 0.044715 x^3)
    t = np.tanh(u, out=u)
    y = t + 1
    y *= x
    y *= x.dtype.type(0.5)
    return y, ((x, t) if keep else ())


def gelu_tanh_backward(g, x, t):
    x_du = x * x  # x du/dx = c x (1 + 3 * 0.044715 x^2)
    x_du *= x.dtype.type(3 * 0.044715 * GELU_C)
    x_du += x.dtype.type(GELU_C)
    x_du *= x
    grad = np.multiply(t, t, out=np.empty_like(t))
    np.subtract(1, grad, out=grad)
    grad *= x_du
    grad += t
    grad += 1
    grad *= x.dtype.type(0.5)
    grad *= g
    return grad


def gelu_forward(x, keep=True):
    cdf, density = normal_cdf(x, density=keep)
    if not keep:
        cdf *= x  # y, into Phi's array: nothing else reads it
        return cdf, ()
    y = x * cdf
    density *= x
    density += cdf  # dy/dx = Phi(x) + x phi(x)
    return y, (density,)


IN_PLACE = dict(ACTIVATIONS, gelu=ACTIVATIONS["gelu"]._replace(forward=gelu_forward),
                gelu_tanh=Activation(gelu_tanh_forward, gelu_tanh_backward, *ACTIVATIONS["gelu_tanh"][2:]))


@kernels.register(GELU, device="cpu")
class GELUInPlace(GELU):
    table = IN_PLACE


@kernels.register(GELUTanh, device="cpu")
class GELUTanhInPlace(GELUTanh):
    table = IN_PLACE


@kernels.register(Linear, device="cpu")
class LinearInPlace(Linear):
    table = IN_PLACE

    def forward(self, x, weight, bias=None):
        self.has_bias = bias is not None
        self.save(x=x, weight=weight)
        z = as_rows(x) @ weight.T
        if bias is not None:
            z += bias
        if self.activation is not None:
            z = save_activation(self, self.table[self.activation], z)
        return z.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        g = as_rows(g)
        if self.activation is not None:
            g = activation_backward(self, self.table[self.activation], g)
        grad_x = (g @ self.weight).reshape(self.x.shape)
        grad_weight = g.T @ as_rows(self.x)
        return (grad_x, grad_weight, leading_sum(g)) if self.has_bias else (grad_x, grad_weight)
