"""Activations: ReLU, GELU (exact, through the normal CDF), GELU's tanh form and SiLU, as
ops and as the one table of activation names that ``linear(..., activation=)``, the
transformer blocks, BERT's config and the CUDA kernel read.
Guide: docs/backward.md#gelu-exact-and-tanh, docs/backward.md#silu-and-swiglu
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from ..backend import get_array_module, normal_cdf
from ..errors import ArgumentError
from ..tensor import Function

GELU_C = math.sqrt(2.0 / math.pi)  # the tanh form's constant, c = sqrt(2 / pi)


def relu_forward(x, keep=True):
    """y = max(x, 0); keeps the one-byte mask x > 0 (True at a NaN input too, whose
    gradient passes, as PyTorch's)."""
    return get_array_module(x).maximum(x, 0), ((~(x <= 0),) if keep else ())


def relu_backward(g, positive):
    return g * positive                                   # dy/dx = 1 where x > 0, else 0


def gelu_forward(x, keep=True):
    """y = x Phi(x); keeps dy/dx = Phi(x) + x phi(x), one array."""
    cdf, density = normal_cdf(x, density=keep)            # Phi(x), phi(x)
    return x * cdf, ((cdf + x * density,) if keep else ())


def gelu_backward(g, slope):
    return g * slope


def gelu_tanh_forward(x, keep=True):
    """y = x/2 (1 + tanh(u)), u = c (x + 0.044715 x^3); keeps x and t = tanh(u)."""
    t = get_array_module(x).tanh(GELU_C * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1 + t), ((x, t) if keep else ())


def gelu_tanh_backward(g, x, t):
    du_dx = GELU_C * (1 + 3 * 0.044715 * x * x)
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)  # product rule, tanh' = 1 - t^2


def sigmoid(x):
    """1 / (1 + e^-x), written exp(-log(1 + e^-x)) = exp(-logaddexp(0, -x)): the same
    number, but e^-x is never formed, so x = -800 gives 0 rather than an overflow."""
    xp = get_array_module(x)
    return xp.exp(-xp.logaddexp(0, -x))


def silu_forward(x, keep=True):
    """y = x sigmoid(x); keeps dy/dx = s (1 + x (1 - s)), s = sigmoid(x), one array."""
    s = sigmoid(x)
    return x * s, ((s * (1 + x * (1 - s)),) if keep else ())


def silu_backward(g, slope):
    return g * slope                                      # product rule, sigmoid' = s (1 - s)


class Activation(NamedTuple):
    forward: Callable  # (x, keep) -> (y, the arrays its backward needs in the order of ``saved``, or () when not keep)
    backward: Callable  # (g, *saved arrays) -> dL/dx
    saved: tuple  # the names those arrays are kept under


ACTIVATIONS = {  # "gelu" is the exact form everywhere (PyTorch's default, BERT's); "gelu_tanh" GPT-2's
    "relu": Activation(relu_forward, relu_backward, ("positive",)),
    "gelu": Activation(gelu_forward, gelu_backward, ("gelu_slope",)),
    "gelu_tanh": Activation(gelu_tanh_forward, gelu_tanh_backward, ("gelu_input", "tanh_u")),
    "silu": Activation(silu_forward, silu_backward, ("silu_slope",)),  # Llama's MLP (hidden_act "silu")
}


def check_activation(name, where: str, optional: bool = False) -> str | None:
    """``name`` if it is a key of ``ACTIVATIONS`` (or None, when ``optional``), else an
    ArgumentError naming ``where`` and the names it takes."""
    if (name is None and optional) or name in ACTIVATIONS:
        return name
    allowed = ("None or one of " if optional else "one of ") + str(sorted(ACTIVATIONS))
    raise ArgumentError(f"{where}: activation must be {allowed}, got {name!r}")


def save_activation(node: Function, activation: Activation, x):
    """``activation`` of x; what its backward needs is saved on ``node`` when ``node``
    will have a backward."""
    y, saved = activation.forward(x, any(node.needs_input_grad))
    node.save(**dict(zip(activation.saved, saved)))
    return y


def activation_backward(node: Function, activation: Activation, g):
    """dL/dx of the ``activation`` that ``save_activation`` applied on ``node``."""
    return activation.backward(g, *(getattr(node, saved) for saved in activation.saved))


class _ActivationOp(Function):
    activation = ""  # a key of ACTIVATIONS
    table = ACTIVATIONS  # each activation's math (a faster path may hold faster forms of the same)

    def forward(self, x):
        return save_activation(self, self.table[self.activation], x)

    def backward(self, g):
        return activation_backward(self, self.table[self.activation], g)


class ReLU(_ActivationOp):
    """y = max(x, 0).  dL/dx = g where x > 0, else 0 (the subgradient 0 at x = 0).

    Keeps the one-byte mask x > 0, not y: in a feed-forward block y goes on to dropout,
    which makes a new array, so y itself is freed as soon as dropout has read it."""

    activation = "relu"


class GELUTanh(_ActivationOp):
    """GELU, tanh form ("gelu_tanh", GPT-2's): y = x/2 * (1 + tanh(u)), u = c (x + 0.044715 x^3), c = sqrt(2/pi).

    dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * c (1 + 3 * 0.044715 x^2), with t = tanh(u).
    The forward saves x and t.
    """

    floating = True
    activation = "gelu_tanh"


class GELU(_ActivationOp):
    """GELU as PyTorch and BERT define it ("gelu"): y = x Phi(x), Phi the standard normal CDF,
    Phi(x) = (1 + erf(x / sqrt 2)) / 2.

    dy/dx = Phi(x) + x phi(x), with phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the density
    (the product rule, Phi' = phi). The forward has phi(x) on the way to Phi(x)
    (``backend.normal_cdf``) and saves dy/dx itself, one array; the backward is g dy/dx.
    """

    floating = True
    activation = "gelu"


class SiLU(_ActivationOp):
    """SiLU, or swish ("silu", Llama's): y = x s with s = sigmoid(x) = 1 / (1 + e^-x).

    dy/dx = s + x s (1 - s) = s (1 + x (1 - s)) (the product rule, sigmoid' = s (1 - s)).
    The forward saves dy/dx itself, one array; the backward is g dy/dx.
    """

    floating = True
    activation = "silu"


def relu(x):
    return ReLU()(x)


def silu(x):
    """SiLU (swish), x * sigmoid(x), as PyTorch's ``silu`` and Llama's "silu"."""
    return SiLU()(x)


def gelu(x, approximate="none"):
    """GELU, as PyTorch's: ``approximate="none"`` (the default) the exact x Phi(x) with
    the normal CDF through erf (BERT's "gelu"); ``approximate="tanh"`` the tanh form
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's, "gelu_tanh")."""
    if approximate == "tanh":
        return GELUTanh()(x)
    if approximate == "none":
        return GELU()(x)
    raise ArgumentError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
