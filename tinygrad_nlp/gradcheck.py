"""Finite-difference gradient checks, in float64.

``mode="random"`` compares, for a few random unit directions d per input, the central
difference (f(x + eps d) - f(x - eps d)) / (2 eps) with the analytic <grad, d>: one pair
of forward passes per direction, so whole models can be checked. ``mode="full"`` does
the same for every element (d = a unit basis vector) and pinpoints a wrong entry.

A non-scalar output is reduced to the scalar sum(out * w) with a fixed random w, so the
whole Jacobian-vector product is checked, not only its sum.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .errors import ArgumentError, GradcheckError
from .tensor import Tensor, no_grad


def _scalar_fn(fn, inputs, seed):
    with no_grad():
        out = fn(*inputs)
    xp = backend.get_array_module(out.data)
    if out.size == 1:
        weights = None
    else:
        weights = xp.asarray(np.random.default_rng(seed + 1).standard_normal(out.shape))

    def scalar():
        with no_grad():
            y = fn(*inputs).data
        return float(y.sum() if weights is None else (y * weights).sum())

    def analytic():
        for t in inputs:
            t.grad = None
        y = fn(*inputs)
        if weights is None:
            y.backward(xp.ones_like(y.data))
        else:
            y.backward(weights.astype(y.dtype))
        return [None if t.grad is None else t.grad.copy() for t in inputs]

    return scalar, analytic


def _comparisons(fn, inputs, eps, mode, n_directions, seed):
    """(input index, where, analytic, numerical, gradient norm) for every probe of every
    input that requires a gradient: ``n_directions`` random unit directions (mode
    "random") or each element (mode "full"), by central differences."""
    scalar, analytic = _scalar_fn(fn, inputs, seed)
    grads = analytic()
    rng = np.random.default_rng(seed)
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        xp = backend.get_array_module(t.data)
        grad = grads[i] if grads[i] is not None else xp.zeros_like(t.data)
        norm = float(xp.sqrt((grad * grad).sum()))
        original = t.data.copy()
        if mode == "random":
            probes = []
            for n in range(n_directions):
                d = rng.standard_normal(t.shape)
                probes.append((f"random direction {n}", xp.asarray(d / max(np.linalg.norm(d), 1e-300))))
        else:
            probes = ((index, None) for index in np.ndindex(*t.shape))
        for where, direction in probes:
            if direction is None:  # a unit basis vector: move one element
                direction = xp.zeros_like(original)
                direction[where] = 1
                a = float(grad[where])
            else:
                a = float((grad * direction).sum())
            t.data = original + eps * direction
            plus = scalar()
            t.data = original - eps * direction
            minus = scalar()
            t.data = original
            yield i, where, a, (plus - minus) / (2 * eps), norm


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="random", n_directions=3, seed=0, name=None):
    """Check the gradients of ``fn(*inputs)`` against central differences.

    ``inputs``: Tensors; those with ``requires_grad`` are checked and must be float64.
    Returns True, or raises ``GradcheckError`` naming the input, the worst index (or
    direction), and the analytic and numerical values.
    """
    if mode not in ("random", "full"):
        raise ArgumentError(f"gradcheck: mode must be 'random' or 'full', got {mode!r}")
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ArgumentError("gradcheck: no input requires a gradient")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ArgumentError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")
    label = name or getattr(fn, "__name__", "fn")
    worst = {}
    for i, where, a, n, _ in _comparisons(fn, inputs, eps, mode, n_directions, seed):
        excess = abs(a - n) - (atol + rtol * abs(n))
        if i not in worst or excess > worst[i][0]:
            worst[i] = (excess, where, a, n)
    for i, (excess, where, a, n) in worst.items():
        if excess > 0:
            rel = abs(a - n) / max(abs(n), 1e-300)
            raise GradcheckError(
                f"gradcheck({label}): input {i} {inputs[i].shape}, worst at {where}: analytic {a:.10g} vs numerical "
                f"{n:.10g} (abs error {abs(a - n):.3g}, rel error {rel:.3g}, atol {atol}, rtol {rtol})"
            )
    return True


def max_relative_error(fn, inputs, eps=1e-6, n_directions=5, seed=0):
    """The largest |analytic - numerical| over random unit directions of every input
    that requires a gradient, relative to the size of that input's gradient (the scale
    of a directional derivative: relative to the derivative itself, a direction nearly
    orthogonal to the gradient would report rounding noise as error)."""
    return max((abs(a - n) / max(norm, 1e-12)
                for _, _, a, n, norm in _comparisons(fn, list(inputs), eps, "random", n_directions, seed)),
               default=0.0)
