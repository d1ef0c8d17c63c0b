"""Tensor and reverse-mode autograd.

A ``Tensor`` wraps a NumPy or CuPy array. Every op is a ``Function`` whose ``forward``
maps raw arrays to a raw array (saving on ``self`` only what its backward needs) and
whose ``backward`` maps the upstream gradient to one gradient per input. Calling a
Function on Tensors runs the forward and, when a gradient is wanted, links the output
to the Function and the Function to its parents: for each input, the Function that made
it, or the input itself when it is a leaf (a parameter). Those links are the graph; it
holds no intermediate Tensor, so an activation that no backward saved is freed as soon
as the forward is done with it. ``Tensor.backward`` walks the graph once, in reverse
topological order, without recursion. At a leaf, the gradient is added into ``.grad``
(``Tensor.accumulate_grad``) and the hooks registered on the leaf run
(``register_post_accumulate_grad_hook``, PyTorch's): the flat parameter buffers and the
data-parallel replicas act on gradients that way.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np

from . import backend
from .errors import AnomalyError, GraphError, ShapeError

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
    """One node of the graph.

    A subclass implements ``forward(*arrays)`` (raw arrays in, a raw array out) and
    ``backward(grad)`` (one gradient per input, or None); settings that are not
    differentiated (an axis, ids, a mask) go to ``__init__``. Its life has three steps:

    - ``check(*arrays)`` validates the inputs, before any math (shapes, ids, axes);
      then the one dispatch (``backend.kernels``) may make the node an instance of a
      faster subclass registered for these arrays (``kernels/``): the same math, the
      same settings, another way to compute it;
    - ``forward`` keeps what its backward needs with ``self.save(name=array)``;
    - after the last backward through the node, the graph walk calls ``release()``,
      which drops the saved arrays and the links to its parents. During that last backward
      ``may_overwrite_saved`` is True: the backward may reuse saved arrays as its
      output instead of allocating new ones.

    ``needs_input_grad[i]`` says whether input i wants a gradient (a backward may skip
    the others and return None for them); under ``no_grad`` none does, so a forward
    that computes gradients early does so only when they will be used.
    """

    parents: tuple = ()  # per input: the Function that made it, the leaf Tensor itself, or None (no gradient)
    output_shape: tuple = ()
    output_dtype = None
    floating = False  # True: integer or boolean inputs are computed in float32 (float64 if another input is)
    needs_input_grad: tuple = ()
    saved_names: tuple = ()
    released = False
    may_overwrite_saved = False

    def check(self, *arrays) -> None:
        """Raise a documented error if the inputs do not fit this op (default: accept)."""

    def suits(self, *arrays) -> bool:
        """For a faster implementation registered in ``kernels/``: whether it computes
        the op on these (checked) inputs (default: yes). ``backend.kernels.implementation``
        asks it before the node runs on that implementation."""
        return True

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, **arrays) -> None:
        """Keep ``arrays`` for the backward, as attributes of this node."""
        self.__dict__.update(arrays)
        self.saved_names += tuple(name for name in arrays if name not in self.saved_names)

    def saved_arrays(self) -> dict:
        """{name: array} of what this node keeps for its backward (arrays only)."""
        return {name: value for name in self.saved_names
                if hasattr(value := getattr(self, name, None), "shape") and hasattr(value, "dtype")}

    def release(self) -> None:
        """Drop the saved arrays and the links to the parents (the graph walk calls this once)."""
        for name in self.saved_names:
            self.__dict__.pop(name, None)
        self.saved_names, self.parents, self.released = (), (), True

    @property
    def name(self) -> str:
        """The op's name: its textbook class's, also when a faster path computes it."""
        return getattr(type(self), "speeds_up", type(self)).__name__

    def __call__(self, *inputs) -> Tensor:
        """Run the op on Tensors, arrays or Python numbers (None for an absent optional
        input) and, when a gradient is wanted, record this node as the output's creator."""
        tensors = as_tensors(inputs)
        arrays = [None if t is None else t.data for t in tensors]
        backend.get_array_module(*arrays)  # mixed NumPy/CuPy fails here, naming both
        arrays = _promote_integers(arrays, self.floating)
        self.check(*arrays)
        # the one dispatch: this op's textbook class, or a faster one registered for it
        self.__class__ = backend.kernels.implementation(self, arrays)
        self.needs_input_grad = tuple(_grad_enabled and t is not None and t.requires_grad for t in tensors)
        try:
            out = Tensor(self.forward(*arrays))
        except MemoryError as error:
            raise backend.out_of_memory(error, f"{self.name} forward (inputs {_shapes(arrays)})") from None
        if _anomaly_mode:
            _check_finite(out.data, f"output of {self.name} (forward)")
        if any(self.needs_input_grad):
            self.parents = tuple((t if t.creator is None else t.creator) if wants else None
                                 for t, wants in zip(tensors, self.needs_input_grad))
            self.output_shape, self.output_dtype = tuple(out.data.shape), out.data.dtype
            out.requires_grad = True
            out.creator = self
        return out


def _shapes(arrays) -> str:
    return ", ".join("None" if a is None else str(tuple(a.shape)) for a in arrays)


def _is_float(array) -> bool:
    return np.issubdtype(array.dtype, np.floating)


def _promote_integers(arrays, floating: bool):
    """PyTorch's rule for integer inputs: mixed with float inputs, or into a float op
    (``floating``), they are cast to the inputs' float dtype (float64 if one is, else
    float32), never silently to float64. All-integer inputs to other ops stay integer."""
    present = [a for a in arrays if a is not None]
    floats = [a for a in present if _is_float(a)]
    if len(floats) == len(present) or not (floats or floating):
        return arrays
    target = np.result_type(*(a.dtype for a in floats)) if floats else np.float32
    return [a if a is None or _is_float(a) else a.astype(target) for a in arrays]


def as_tensors(values) -> tuple:
    """The one place arguments become Tensors: Tensors stay, arrays are wrapped, and a
    Python number takes the dtype and device of the first Tensor or array among
    ``values`` (so ``x * 2`` keeps x float32 on its device), except that a float number
    with an integer tensor is float32; None stays None."""
    like = next((v.data if isinstance(v, Tensor) else v for v in values if hasattr(v, "shape")), None)
    xp = backend.get_array_module(like)
    result = []
    for v in values:
        if v is None or isinstance(v, Tensor):
            result.append(v)
        elif like is not None and not hasattr(v, "shape"):
            keeps_dtype = _is_float(like) or isinstance(v, (bool, int, np.integer, np.bool_))
            result.append(Tensor(xp.asarray(v, dtype=like.dtype if keeps_dtype else np.float32)))
        else:
            result.append(Tensor(v))
    return tuple(result)


def _as_array(data, dtype=None):
    if backend.is_cupy_array(data) or isinstance(data, np.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    array = np.asarray(data, dtype=dtype)
    if dtype is None and array.dtype == np.float64 and not isinstance(data, np.generic):
        array = array.astype(np.float32)  # Python floats and lists default to float32
    return array


def array_of(x):
    """The array inside a Tensor, or the argument itself (ids, targets, masks)."""
    return x.data if isinstance(x, Tensor) else x


class RemovableHandle:
    """What registering a hook returns: ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks, self.id = hooks, next(self._ids)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)


class Tensor:
    """An array (``.data``), its gradient (``.grad``) and the op that made it."""

    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__
    _post_accumulate_grad_hooks = None  # {handle id: hook}, made by the first registration

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator: Function | None = None

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

    def to(self, device: str | None = None, dtype=None) -> Tensor:
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

    def detach(self) -> Tensor:
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
            grad = _as_array(array_of(grad), self.dtype)
            backend.get_array_module(self.data, grad)
            if tuple(grad.shape) != self.shape:
                raise ShapeError(f"backward(): gradient shape {tuple(grad.shape)} does not match tensor shape {self.shape}")
            grad = grad.copy()

        if self.creator is None:  # a leaf: its gradient is the seed itself
            self.accumulate_grad(grad)
            return
        grads = {id(self.creator): grad}
        given = set()  # the arrays this walk has given to leaves as their .grad
        for node in graph_order(self.creator):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if isinstance(node, Tensor):  # a leaf
                if node.grad is None and (g.base is not None or id(g) in given):
                    # its own array, so an optimizer or clip_grad_norm that scales .grad in
                    # place cannot change another tensor's gradient or a saved buffer
                    g = g.copy()
                given.add(id(g))
                node.accumulate_grad(g)
                continue
            fn = node
            if fn.released:
                raise GraphError(
                    f"backward through a graph that was already freed (at {fn.name}); "
                    "pass retain_graph=True to the first backward() to go through it twice"
                )
            fn.may_overwrite_saved = not retain_graph
            try:
                input_grads = fn.backward(g)
            except MemoryError as error:
                raise backend.out_of_memory(error, f"{fn.name} backward (gradient {tuple(g.shape)})") from None
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, gi in zip(fn.parents, input_grads):
                if gi is None or parent is None:
                    continue
                if _anomaly_mode:
                    _check_finite(gi, f"gradient computed by {fn.name} (backward)")
                previous = grads.get(id(parent))
                grads[id(parent)] = gi if previous is None else previous + gi
            if not retain_graph:
                fn.release()

    def accumulate_grad(self, grad) -> None:
        """Add ``grad`` into ``.grad`` as a backward does when it reaches this leaf, then
        call the hooks registered with ``register_post_accumulate_grad_hook``. ``grad`` is
        cast to this tensor's dtype and shape; when ``.grad`` is None, it becomes ``.grad``
        itself (so pass an array nothing else will change), otherwise it is added in place."""
        if grad.dtype != self.data.dtype:
            grad = grad.astype(self.data.dtype)
        if tuple(grad.shape) != self.shape:
            grad = grad.reshape(self.shape)
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad
        if self._post_accumulate_grad_hooks:
            for hook in list(self._post_accumulate_grad_hooks.values()):
                hook(self)

    def register_post_accumulate_grad_hook(self, hook) -> RemovableHandle:
        """Call ``hook(tensor)`` each time a gradient has been added into this leaf's
        ``.grad`` (by a backward, or ``accumulate_grad``), in the order registered, as
        PyTorch's method of this name does. The hook may read ``.grad``, replace it with
        another array holding the same values, or take it away (set it to None). Returns
        a handle whose ``remove()`` unregisters the hook."""
        if self.creator is not None:
            raise GraphError(f"register_post_accumulate_grad_hook: this tensor is the output of {self.creator.name}; "
                             "hooks go on leaf tensors (parameters, inputs), whose gradients are accumulated")
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = {}
        handle = RemovableHandle(self._post_accumulate_grad_hooks)
        self._post_accumulate_grad_hooks[handle.id] = hook
        return handle

    def zero_grad(self) -> None:
        self.grad = None


def graph_order(root: Function) -> list:
    """The Functions and leaf Tensors reachable from ``root``, each after every Function
    that uses it: the order a backward visits them (iterative depth-first search, so
    deep graphs do not hit the recursion limit)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in getattr(node, "parents", ()):
            if parent is not None and id(parent) not in visited:
                stack.append((parent, False))
    order.reverse()
    return order
