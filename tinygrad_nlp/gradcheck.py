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
    scalar, analytic = _scalar_fn(fn, inputs, seed)
    grads = analytic()
    rng = np.random.default_rng(seed)

    for i in checked:
        t = inputs[i]
        xp = backend.get_array_module(t.data)
        grad = grads[i] if grads[i] is not None else xp.zeros_like(t.data)
        if mode == "random":
            probes = []
            for _ in range(n_directions):
                d = rng.standard_normal(t.shape)
                d /= max(np.linalg.norm(d), 1e-300)
                probes.append((f"random direction {len(probes)}", xp.asarray(d)))
        else:
            probes = ((idx, None) for idx in np.ndindex(*t.shape))
        worst = None
        original = t.data.copy()
        for where, direction in probes:
            if direction is None:
                t.data[where] += eps
                plus = scalar()
                t.data[where] = original[where] - eps
                minus = scalar()
                t.data[where] = original[where]
                a = float(grad[where])
            else:
                t.data = original + eps * direction
                plus = scalar()
                t.data = original - eps * direction
                minus = scalar()
                t.data = original
                a = float((grad * direction).sum())
            n = (plus - minus) / (2 * eps)
            excess = abs(a - n) - (atol + rtol * abs(n))
            if worst is None or excess > worst[0]:
                worst = (excess, where, a, n)
        t.data = original
        if worst is not None and worst[0] > 0:
            _, where, a, n = worst
            rel = abs(a - n) / max(abs(n), 1e-300)
            raise GradcheckError(
                f"gradcheck({label}): input {i} {t.shape}, worst at {where}: analytic {a:.10g} vs numerical {n:.10g} "
                f"(abs error {abs(a - n):.3g}, rel error {rel:.3g}, atol {atol}, rtol {rtol})"
            )
    return True


def max_relative_error(fn, inputs, eps=1e-6, n_directions=5, seed=0):
    """The largest |analytic - numerical| / max(|numerical|, |analytic|, tiny) over
    random directions of every input that requires a gradient (for reports)."""
    inputs = list(inputs)
    scalar, analytic = _scalar_fn(fn, inputs, seed)
    grads = analytic()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        xp = backend.get_array_module(t.data)
        original = t.data.copy()
        grad = grads[i] if grads[i] is not None else xp.zeros_like(t.data)
        for _ in range(n_directions):
            d = rng.standard_normal(t.shape)
            d = xp.asarray(d / max(np.linalg.norm(d), 1e-300))
            t.data = original + eps * d
            plus = scalar()
            t.data = original - eps * d
            minus = scalar()
            t.data = original
            n = (plus - minus) / (2 * eps)
            a = float((grad * d).sum())
            worst = max(worst, abs(a - n) / max(abs(n), abs(a), 1e-12))
    return worst
