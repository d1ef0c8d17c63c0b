"""Elementwise ops with NumPy broadcasting.

When an input was broadcast in the forward, each of its elements fed several outputs,
so its gradient is the upstream gradient summed over the broadcast axes
(``unbroadcast``). Guide: docs/backward.md#elementwise-ops-and-broadcasting
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from ..backend import get_array_module, normal_cdf
from ..errors import ArgumentError
from ..tensor import Function
from .checks import broadcast_shape


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: over leading axes it lacks and axes where it is 1."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class _Binary(Function):
    """y = f(a, b) with broadcasting; ``self.shapes`` keeps both input shapes so the
    backward can sum each gradient back to its input's shape."""

    def check(self, a, b):
        broadcast_shape(self.name, a.shape, b.shape)

    def unbroadcast(self, grad_a, grad_b):
        a_shape, b_shape = self.shapes
        return (None if grad_a is None else unbroadcast(grad_a, a_shape),
                None if grad_b is None else unbroadcast(grad_b, b_shape))


class Add(_Binary):
    """y = a + b.  dy/da = dy/db = 1, so both get the upstream gradient (unbroadcast)."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, g):
        return self.unbroadcast(g, g)


class Sub(_Binary):
    """y = a - b.  dL/da = g, dL/db = -g."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, g):
        return self.unbroadcast(g, -g)


class Mul(_Binary):
    """y = a * b.  dL/da = g * b, dL/db = g * a (product rule)."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        self.save(a=a, b=b)
        return a * b

    def backward(self, g):
        return self.unbroadcast(g * self.b, g * self.a)


class Div(_Binary):
    """y = a / b.  dL/da = g / b, dL/db = -g * a / b**2 = -g * y / b."""

    floating = True

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        y = a / b
        self.save(b=b, y=y)
        return y

    def backward(self, g):
        ga = g / self.b
        return self.unbroadcast(ga, -ga * self.y)


class Pow(_Binary):
    """y = a ** b.

    dL/da = g * b * a**(b-1), taken as 0 where b == 0 (y = 1 is constant in a there,
    even at a = 0, where the formula would give 0 * inf).
    dL/db = g * y * log(a), defined for a > 0 and taken as 0 where a <= 0 (only integer
    exponents are meaningful there; PyTorch gives -inf at a = 0, b < 0).
    Integer tensors raised to negative integer powers raise ArgumentError (as NumPy
    refuses them).
    """

    def check(self, a, b):
        super().check(a, b)
        xp = get_array_module(a, b)
        if xp.issubdtype(a.dtype, xp.integer) and xp.issubdtype(b.dtype, xp.integer) and b.size and bool((b < 0).any()):
            raise ArgumentError(f"pow: integers to negative integer powers are not allowed (exponent {int(b.min())}); "
                                "make the base a float tensor")

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        y = a ** b
        self.save(a=a, b=b, y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        ga = None
        if self.needs_input_grad[0]:
            base = xp.where(self.b == 0, 1, self.a)  # b == 0: 0 * 1**-1 = 0, never 0 * inf
            ga = g * self.b * base ** (self.b - 1)
        gb = None
        if self.needs_input_grad[1]:
            positive = self.a > 0
            gb = xp.where(positive, g * self.y * xp.log(xp.where(positive, self.a, 1)), 0)
        return self.unbroadcast(ga, gb)


class Neg(Function):
    """y = -x.  dL/dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    """y = exp(x).  dy/dx = exp(x) = y, so dL/dx = g * y (reuses the output)."""

    floating = True

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(x)
        self.save(y=y)
        return y

    def backward(self, g):
        return g * self.y


class Log(Function):
    """y = log(x).  dL/dx = g / x."""

    floating = True

    def forward(self, x):
        xp = get_array_module(x)
        self.save(x=x)
        return xp.log(x)

    def backward(self, g):
        return g / self.x


# -- activations ------------------------------------------------------------------------
# Each activation's math is a pair of array functions, shared by its own op (relu, gelu)
# and by ``linear(..., activation=)``, which applies it to its output inside one node.
# ``ACTIVATIONS`` below is the one table of activation names: linear, FeedForward, BERT's
# config, the bias + activation kernel and the tests all read it.
class Activation(NamedTuple):
    forward: Callable  # (x, keep) -> (y, the arrays its backward needs in the order of ``saved``, or () when not keep)
    backward: Callable  # (g, *saved arrays) -> dL/dx
    saved: tuple  # the names those arrays are kept under
    kernel_kind: int  # its number in ops/bias_activation.cu's activation() and slope()


def _relu_forward(x, keep=True):
    return get_array_module(x).maximum(x, 0), ((x > 0,) if keep else ())


def _relu_backward(g, positive):
    return g * positive


_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu_tanh_forward(x, keep=True):
    xp = get_array_module(x)
    u = xp.multiply(x, x, out=xp.empty_like(x))  # (an array even for 0-d x); x ** 3 would take
    # NumPy's general power loop, forty times slower
    u *= x.dtype.type(0.044715)
    u += 1
    u *= x
    u *= x.dtype.type(_GELU_C)
    t = xp.tanh(u, out=u)
    y = t + 1
    y *= x
    y *= x.dtype.type(0.5)
    return y, ((x, t) if keep else ())


def _gelu_tanh_backward(g, x, t):
    # dy/dx = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3 * 0.044715 x^2)
    x_du = x * x  # x du/dx
    x_du *= x.dtype.type(3 * 0.044715 * _GELU_C)
    x_du += x.dtype.type(_GELU_C)
    x_du *= x
    xp = get_array_module(g)
    grad = xp.multiply(t, t, out=xp.empty_like(t))
    xp.subtract(1, grad, out=grad)
    grad *= x_du
    grad += t
    grad += 1
    grad *= x.dtype.type(0.5)
    grad *= g
    return grad


def _gelu_exact_forward(x, keep=True):
    cdf, density = normal_cdf(x, density=keep)
    if not keep:
        cdf *= x  # y, into Phi's array: nothing else reads it
        return cdf, ()
    y = x * cdf
    density *= x  # dy/dx = Phi(x) + x phi(x), kept instead of x and Phi(x)
    density += cdf
    return y, (density,)


def _gelu_exact_backward(g, slope):
    return g * slope


ACTIVATIONS = {  # "gelu" is the exact form everywhere (PyTorch's default, BERT's); "gelu_tanh" GPT-2's
    "relu": Activation(_relu_forward, _relu_backward, ("positive",), 1),
    "gelu": Activation(_gelu_exact_forward, _gelu_exact_backward, ("gelu_slope",), 2),
    "gelu_tanh": Activation(_gelu_tanh_forward, _gelu_tanh_backward, ("gelu_input", "tanh_u"), 3),
}


def check_activation(name, where: str, optional: bool = False) -> str | None:
    """``name`` if it is a key of ``ACTIVATIONS`` (or None, when ``optional``), else an
    ArgumentError naming ``where`` and the names it takes."""
    if (name is None and optional) or name in ACTIVATIONS:
        return name
    allowed = ("None or one of " if optional else "one of ") + str(sorted(ACTIVATIONS))
    raise ArgumentError(f"{where}: activation must be {allowed}, got {name!r}")


def save_activation(node: Function, name: str, x):
    """``ACTIVATIONS[name]`` of x; what its backward needs is saved on ``node`` when
    ``node`` will have a backward."""
    activation = ACTIVATIONS[name]
    y, saved = activation.forward(x, any(node.needs_input_grad))
    node.save(**dict(zip(activation.saved, saved)))
    return y


def activation_backward(node: Function, name: str, g):
    """dL/dx of the activation ``save_activation`` applied on ``node``."""
    activation = ACTIVATIONS[name]
    return activation.backward(g, *(getattr(node, saved) for saved in activation.saved))


class _ActivationOp(Function):
    activation = ""  # a key of ACTIVATIONS

    def forward(self, x):
        return save_activation(self, self.activation, x)

    def backward(self, g):
        return activation_backward(self, self.activation, g)


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


class Tanh(Function):
    """y = tanh(x).  dy/dx = 1 - y^2 (reuses the output)."""

    floating = True

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.tanh(x)
        self.save(y=y)
        return y

    def backward(self, g):
        return g * (1 - self.y * self.y)


# -- the public functions ------------------------------------------------------------
def add(a, b):
    """a + b, broadcasting."""
    return Add()(a, b)


def sub(a, b):
    """a - b, broadcasting."""
    return Sub()(a, b)


def mul(a, b):
    """a * b, broadcasting."""
    return Mul()(a, b)


def div(a, b):
    """a / b, broadcasting."""
    return Div()(a, b)


def pow(a, b):
    """a ** b, broadcasting."""
    return Pow()(a, b)


def neg(x):
    return Neg()(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def relu(x):
    return ReLU()(x)


def gelu(x, approximate="none"):
    """GELU, as PyTorch's: ``approximate="none"`` (the default) the exact x Phi(x) with
    the normal CDF through erf (BERT's "gelu"); ``approximate="tanh"`` the tanh form
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2's, "gelu_tanh")."""
    if approximate == "tanh":
        return GELUTanh()(x)
    if approximate == "none":
        return GELU()(x)
    raise ArgumentError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


def tanh(x):
    return Tanh()(x)
