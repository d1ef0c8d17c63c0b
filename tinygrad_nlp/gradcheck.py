"""Finite-difference gradient checks, in float64.

``mode="random"`` compares, for a few random unit directions d per input, the central
difference (f(x + eps d) - f(x - eps d)) / (2 eps) with the analytic <grad, d>: one pair
of forward passes per direction, so whole models can be checked. ``mode="full"`` does
the same for every element (d = a unit basis vector) and pinpoints the wrong entries.

A non-scalar output is reduced to the scalar sum(out * w) with a fixed random w, so the
whole Jacobian-vector product is checked, not only its sum.

``gradcheck(fn, inputs, name="layer_norm")`` raises ``GradcheckError`` naming the op, and
for each input that fails its shape and its worst entries, analytic beside numerical;
``probes`` yields the same comparisons one by one, to look at a check that passes too.
"""
from __future__ import annotations

from typing import NamedTuple

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


class Probe(NamedTuple):
    """One comparison: input ``input`` moved along ``where`` (an element's index, or
    "random direction n"), the analytic and numerical derivatives of the checked scalar
    along it, and the norm of that input's whole analytic gradient."""
    input: int
    where: tuple | str
    analytic: float
    numerical: float
    grad_norm: float

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numerical)

    def __str__(self) -> str:
        relative = f", relative {self.error / abs(self.numerical):.3g}" if abs(self.numerical) > 1e-12 else ""
        return (f"at {self.where}: analytic {self.analytic:.6g} vs numerical {self.numerical:.6g} "
                f"(off by {self.error:.3g}{relative})")


def probes(fn, inputs, eps=1e-6, mode="full", n_directions=3, seed=0):
    """A ``Probe`` for every probe of every input that requires a gradient:
    ``n_directions`` random unit directions (mode "random") or each element (mode
    "full"), by central differences."""
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
            directions = []
            for n in range(n_directions):
                d = rng.standard_normal(t.shape)
                directions.append((f"random direction {n}", xp.asarray(d / max(np.linalg.norm(d), 1e-300))))
        else:
            directions = ((index, None) for index in np.ndindex(*t.shape))
        for where, direction in directions:
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
            yield Probe(i, where, a, (plus - minus) / (2 * eps), norm)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="random", n_directions=3, seed=0, name=None, show=5):
    """Check the gradients of ``fn(*inputs)`` against central differences.

    ``inputs``: Tensors; those with ``requires_grad`` are checked and must be float64.
    ``name`` (default: ``fn``'s own) starts every message. Returns True, or raises
    ``GradcheckError`` naming, for each input that fails, its index and shape, how many
    entries (or directions) are off by more than ``atol + rtol * |numerical|``, and the
    ``show`` worst of them with the analytic and numerical values.
    """
    label = name or getattr(fn, "__name__", "fn").replace("<lambda>", "fn")
    if mode not in ("random", "full"):
        raise ArgumentError(f"gradcheck({label}): mode must be 'random' or 'full', got {mode!r}")
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ArgumentError(f"gradcheck({label}): no input requires a gradient")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ArgumentError(f"gradcheck({label}): input {i} is {inputs[i].dtype}; finite differences need float64")
    counts, wrong = dict.fromkeys(checked, 0), {}
    for probe in probes(fn, inputs, eps, mode, n_directions, seed):
        counts[probe.input] += 1
        if probe.error > atol + rtol * abs(probe.numerical):
            wrong.setdefault(probe.input, []).append(probe)
    if wrong:
        what = "elements" if mode == "full" else "random directions"
        report = []
        for i, found in wrong.items():
            found.sort(key=lambda p: p.error, reverse=True)
            report.append(f"gradcheck({label}): input {i} {tuple(inputs[i].shape)}: {len(found)} of {counts[i]} {what} "
                          f"off by more than {atol} + {rtol} * |numerical|; the worst {min(show, len(found))}:")
            report += [f"    {p}" for p in found[:show]]
        raise GradcheckError("\n".join(report))
    return True


def max_relative_error(fn, inputs, eps=1e-6, n_directions=5, seed=0):
    """The largest |analytic - numerical| over random unit directions of every input
    that requires a gradient, relative to the size of that input's gradient (the scale
    of a directional derivative: relative to the derivative itself, a direction nearly
    orthogonal to the gradient would report rounding noise as error)."""
    return max((p.error / max(p.grad_norm, 1e-12) for p in probes(fn, list(inputs), eps, "random", n_directions, seed)),
               default=0.0)
