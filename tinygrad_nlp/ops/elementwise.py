"""Elementwise ops with NumPy broadcasting.

When an input was broadcast in the forward, each of its elements fed several outputs,
so its gradient is the upstream gradient summed over the broadcast axes
(``unbroadcast``). Guide: docs/backward.md#elementwise-ops-and-broadcasting
"""
from __future__ import annotations

from ..backend import get_array_module
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


def tanh(x):
    return Tanh()(x)
