"""Tensor and reverse-mode autograd.

A ``Tensor`` wraps a NumPy or CuPy array. Every op is a ``Function`` whose ``forward``
maps raw arrays to a raw array (saving on ``self`` only what its backward needs) and
whose ``backward`` maps the upstream gradient to one gradient per input. Calling a
Function on Tensors runs the forward and, when a gradient is wanted, links the output
to the Function: that link is the graph. ``Tensor.backward`` walks the graph once, in
reverse topological order, without recursion.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import backend
from .errors import AnomalyError, GraphError

_grad_enabled = True
_anomaly_mode = False


@contextlib.contextmanager
def no_grad():
    """Within this block ops record no graph (for evaluation and optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def detect_anomaly():
    """Check every op's output (forward) and input gradients (backward) for NaN/inf and
    raise ``AnomalyError`` naming the first op that produced one. Slow: for debugging."""
    global _anomaly_mode
    previous, _anomaly_mode = _anomaly_mode, True
    try:
        yield
    finally:
        _anomaly_mode = previous


def _check_finite(array, what: str) -> None:
    xp = backend.get_array_module(array)
    if xp.issubdtype(array.dtype, xp.floating) and not bool(xp.isfinite(array).all()):
        n_nan = int(xp.isnan(array).sum())
        n_inf = int(xp.isinf(array).sum())
        raise AnomalyError(f"{what} contains {n_nan} NaN and {n_inf} inf values (shape {tuple(array.shape)})")


class Function:
    """One node of the graph. Subclasses implement ``forward(*arrays)`` and
    ``backward(grad)``; non-differentiable settings go to ``__init__``."""

    inputs: tuple = ()
    freed = False
    # True while the last backward through this node runs (no retain_graph): the graph
    # is freed right after, so backward may overwrite arrays its forward saved.
    last_use = False

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, *inputs) -> "Tensor":
        tensors = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in inputs)
        arrays = [t.data for t in tensors]
        backend.get_array_module(*arrays)  # mixed NumPy/CuPy fails here, naming both
        out = Tensor(self.forward(*arrays))
        if _anomaly_mode:
            _check_finite(out.data, f"output of {self.name} (forward)")
        if _grad_enabled and any(t.requires_grad for t in tensors):
            self.inputs = tensors
            out.requires_grad = True
            out._ctx = self
        return out


def _as_array(data, dtype=None):
    if backend.is_cupy_array(data) or isinstance(data, np.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    array = np.asarray(data, dtype=dtype)
    if dtype is None and array.dtype == np.float64 and not isinstance(data, np.generic):
        array = array.astype(np.float32)  # Python floats and lists default to float32
    return array


class Tensor:
    """An array (``.data``), its gradient (``.grad``) and the op that made it."""

    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Function | None = None

    # -- array facts -------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    def __len__(self):
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        return backend.asnumpy(self.data)

    def item(self) -> float:
        return float(self.data.reshape(-1)[0]) if self.size == 1 else float(self.data)

    def to(self, device: str | None = None, dtype=None) -> "Tensor":
        """A copy on ``device`` and/or cast to ``dtype`` (self when nothing changes).
        The copy is a new leaf: gradients do not flow back across devices."""
        data = self.data
        if device is not None and backend.check_device(device) != self.device:
            data = backend.to_device(data, device)
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad)

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{grad})"

    # -- autograd -----------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor, accumulating into ``.grad`` of every leaf
        that requires a gradient. ``grad`` is the upstream gradient (an array of this
        tensor's shape); a one-element tensor needs none."""
        if not self.requires_grad:
            raise GraphError("backward() on a tensor that does not require grad (no graph recorded)")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise GraphError(f"backward() without a gradient needs a scalar, got shape {self.shape}; pass grad=")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            grad = _as_array(grad, self.dtype)
            backend.get_array_module(self.data, grad)
            if tuple(grad.shape) != self.shape:
                from .errors import ShapeError
                raise ShapeError(f"backward(): gradient shape {tuple(grad.shape)} does not match tensor shape {self.shape}")
            grad = grad.copy()

        order = self._topological_order()
        grads = {id(self): grad}
        assigned = set()
        for node in order:
            g = grads.pop(id(node), None)
            fn = node._ctx
            if fn is None:  # a leaf
                if g is not None:
                    node._accumulate(g, assigned)
                continue
            if g is None:
                continue
            if fn.freed:
                raise GraphError(
                    f"backward through a graph that was already freed (at {fn.name}); "
                    "pass retain_graph=True to the first backward() to go through it twice"
                )
            fn.last_use = not retain_graph
            input_grads = fn.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for t, gi in zip(fn.inputs, input_grads):
                if gi is None or not t.requires_grad:
                    continue
                if _anomaly_mode:
                    _check_finite(gi, f"gradient computed by {fn.name} (backward)")
                previous = grads.get(id(t))
                grads[id(t)] = gi if previous is None else previous + gi
            if not retain_graph:
                fn.__dict__ = {"freed": True, "inputs": ()}  # drop saved arrays and inputs

    def _accumulate(self, g, assigned: set) -> None:
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if tuple(g.shape) != self.shape:
            g = g.reshape(self.shape)
        if self.grad is None:
            # Own the array, so an optimizer or clip_grad_norm that scales .grad in
            # place cannot change another tensor's gradient or a saved buffer.
            if g.base is not None or id(g) in assigned:
                g = g.copy()
            assigned.add(id(g))
            self.grad = g
        else:
            self.grad = self.grad + g

    def _topological_order(self):
        """Tensors reachable from self, each after every tensor that uses it
        (iterative depth-first search, so deep graphs do not hit the recursion limit)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                for parent in node._ctx.inputs:
                    if parent.requires_grad and id(parent) not in visited:
                        stack.append((parent, False))
        order.reverse()
        return order

    def zero_grad(self) -> None:
        self.grad = None

    # -- operators (delegating to the functional API) -----------------------
    def __add__(self, other):
        from . import functional as F
        return F.add(self, other)

    def __radd__(self, other):
        from . import functional as F
        return F.add(other, self)

    def __sub__(self, other):
        from . import functional as F
        return F.sub(self, other)

    def __rsub__(self, other):
        from . import functional as F
        return F.sub(other, self)

    def __mul__(self, other):
        from . import functional as F
        return F.mul(self, other)

    def __rmul__(self, other):
        from . import functional as F
        return F.mul(other, self)

    def __truediv__(self, other):
        from . import functional as F
        return F.div(self, other)

    def __rtruediv__(self, other):
        from . import functional as F
        return F.div(other, self)

    def __pow__(self, other):
        from . import functional as F
        return F.pow(self, other)

    def __rpow__(self, other):
        from . import functional as F
        return F.pow(other, self)

    def __matmul__(self, other):
        from . import functional as F
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        from . import functional as F
        return F.matmul(other, self)

    def __neg__(self):
        from . import functional as F
        return F.neg(self)

    def __getitem__(self, index):
        from . import functional as F
        return F.getitem(self, index)

    # -- methods -------------------------------------------------------------
    def reshape(self, *shape):
        from . import functional as F
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        from . import functional as F
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    def permute(self, *axes):
        return self.transpose(*axes)

    @property
    def T(self):
        return self.transpose()

    def sum(self, axis=None, keepdims=False):
        from . import functional as F
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        from . import functional as F
        return F.mean(self, axis=axis, keepdims=keepdims)

    def exp(self):
        from . import functional as F
        return F.exp(self)

    def log(self):
        from . import functional as F
        return F.log(self)

    def relu(self):
        from . import functional as F
        return F.relu(self)

    def tanh(self):
        from . import functional as F
        return F.tanh(self)
