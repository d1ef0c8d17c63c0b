"""Elementwise ops with NumPy broadcasting.

When an input was broadcast in the forward, each of its elements fed several outputs,
so its gradient is the upstream gradient summed over the broadcast axes
(``unbroadcast``). Guide: docs/backward.md#elementwise-ops-and-broadcasting
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function


def broadcast_shape(op: str, *shapes):
    """The broadcast result of ``shapes``, or a ShapeError naming the op and the shapes."""
    out = []
    for dims in zip(*(((1,) * (max(map(len, shapes)) - len(s)) + tuple(s)) for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ShapeError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


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
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        if a.shape != b.shape:
            broadcast_shape(self.name, a.shape, b.shape)
        return self.compute(a, b)


class Add(_Binary):
    """y = a + b.  dy/da = dy/db = 1, so both get the upstream gradient (unbroadcast)."""

    def compute(self, a, b):
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(g, self.b_shape)


class Sub(_Binary):
    """y = a - b.  dL/da = g, dL/db = -g."""

    def compute(self, a, b):
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.a_shape), unbroadcast(-g, self.b_shape)


class Mul(_Binary):
    """y = a * b.  dL/da = g * b, dL/db = g * a (product rule)."""

    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a_shape), unbroadcast(g * self.a, self.b_shape)


class Div(_Binary):
    """y = a / b.  dL/da = g / b, dL/db = -g * a / b**2 = -g * y / b."""

    def compute(self, a, b):
        self.b = b
        self.y = a / b
        return self.y

    def backward(self, g):
        ga = g / self.b
        return unbroadcast(ga, self.a_shape), unbroadcast(-ga * self.y, self.b_shape)


class Pow(_Binary):
    """y = a ** b.  dL/da = g * b * a**(b-1); dL/db = g * y * log(a) (defined for a > 0;
    taken as 0 where a <= 0, where only integer exponents are meaningful)."""

    def __init__(self, b_requires_grad: bool = True):
        self.b_requires_grad = b_requires_grad

    def compute(self, a, b):
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, g):
        xp = get_array_module(g)
        ga = g * self.b * self.a ** (self.b - 1)
        gb = None
        if self.b_requires_grad:
            positive = self.a > 0
            gb = g * self.y * xp.log(xp.where(positive, self.a, 1))
            gb = unbroadcast(gb, self.b_shape)
        return unbroadcast(ga, self.a_shape), gb


class Neg(Function):
    """y = -x.  dL/dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    """y = exp(x).  dy/dx = exp(x) = y, so dL/dx = g * y (reuses the output)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    """y = log(x).  dL/dx = g / x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        return xp.log(x)

    def backward(self, g):
        return g / self.x


class ReLU(Function):
    """y = max(x, 0).  dL/dx = g where x > 0, else 0 (the subgradient 0 at x = 0)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.maximum(x, 0)
        return self.y

    def backward(self, g):
        return g * (self.y > 0)


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """GELU, tanh form: y = x/2 * (1 + tanh(u)), u = c (x + 0.044715 x^3), c = sqrt(2/pi).

    dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * c (1 + 3 * 0.044715 x^2), with t = tanh(u).
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        self.t = xp.tanh(_GELU_C * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + self.t)

    def backward(self, g):
        x, t = self.x, self.t
        du = _GELU_C * (1 + 3 * 0.044715 * x * x)
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


class Tanh(Function):
    """y = tanh(x).  dy/dx = 1 - y^2 (reuses the output)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)
