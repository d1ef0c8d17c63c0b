"""Module and Parameter: the bookkeeping that turns functions into layers."""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import numpy as np

from .. import backend
from ..errors import CheckpointError
from ..tensor import Tensor, no_grad


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad by default).

    Once flattened (``nn.flat``), ``data`` is a view into its FlatBuffer (``flat``) and
    its gradient lands in ``grad_slot``, its view of the buffer's gradients."""

    flat = None

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    @property
    def grad_slot(self):
        """This parameter's view of its flat buffer's gradients (None outside a buffer)."""
        return None if self.flat is None else self.flat.slot(self)

    def __deepcopy__(self, memo):
        """A copy outside any flat buffer, with arrays of its own (``copy.deepcopy(model)``)."""
        copied = memo[id(self)] = Parameter(self.data.copy(), self.requires_grad)
        copied.grad = None if self.grad is None else self.grad.copy()
        return copied

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Loss(Tensor):
    """A scalar loss that is the mean over ``count`` items, with the extra ``outputs`` it
    was computed with (``correct=12``): what a data-parallel step needs to weight and sum
    the losses of its replicas. It holds the loss Tensor's array and graph node, so its
    ``backward`` is the loss's. A model's ``loss`` method returns one."""

    def __init__(self, loss: Tensor, count, **outputs):
        super().__init__(loss.data, requires_grad=loss.requires_grad)
        self.creator = loss.creator
        self.count, self.outputs = float(count), outputs

    def __repr__(self):
        return f"Loss({self.item():.6g}, count={self.count:g}, outputs={self.outputs})"


class Module:
    """Base class of layers and models.

    Attributes that are Parameters, Modules or ModuleLists are found by walking
    ``vars(self)`` in the order they were assigned; ``register_buffer`` keeps arrays
    that move with the module but are not trained (the positional-encoding table).
    """

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- traversal -----------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) pairs, each shared Parameter once."""
        seen = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._named_parameters(prefix + name + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def register_buffer(self, name: str, array) -> None:
        if "_buffers" not in vars(self):
            self._buffers = OrderedDict()
        self._buffers[name] = array

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """{dotted name: host (NumPy) copy of the parameter}. Flattened parameters come
        from one copy of their buffer (one device-to-host transfer)."""
        host_buffers = {}
        state = OrderedDict()
        for name, p in self.named_parameters():
            if p.flat is not None and p.flat.holds_parameters():
                if id(p.flat) not in host_buffers:
                    host_buffers[id(p.flat)] = backend.asnumpy(p.flat.data).copy()
                state[name] = p.flat.piece(host_buffers[id(p.flat)], p)
            else:
                state[name] = backend.asnumpy(p.data).copy()
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy ``state`` into the parameters in place (keeping their device and dtype).

        Raises CheckpointError naming the first missing, unexpected or mismatched entry.
        """
        params = OrderedDict(self.named_parameters())
        for name, p in params.items():
            if name not in state:
                if strict:
                    raise CheckpointError(f"load_state_dict: parameter {name!r} {p.shape} is missing from the state dict")
                continue
            value = state[name]
            if tuple(value.shape) != p.shape:
                raise CheckpointError(
                    f"load_state_dict: parameter {name!r} has shape {p.shape} in the model but "
                    f"{tuple(value.shape)} in the state dict (a checkpoint from another architecture?)"
                )
        if strict:
            unexpected = [k for k in state if k not in params]
            if unexpected:
                name = unexpected[0]
                raise CheckpointError(f"load_state_dict: unexpected entry {name!r} {tuple(state[name].shape)} "
                                      "not in the model (a checkpoint from another architecture?)")
        on_host = {}  # flattened GPU parameters: filled in a host copy, sent in one transfer
        for name, p in params.items():
            if name not in state:
                continue
            if p.device != "cpu" and p.flat is not None and p.flat.holds_parameters():
                if id(p.flat) not in on_host:
                    on_host[id(p.flat)] = (p.flat, backend.asnumpy(p.flat.data))
                p.flat.piece(on_host[id(p.flat)][1], p)[...] = state[name]
            else:
                p.data[...] = backend.to_device(state[name], p.device).astype(p.dtype, copy=False)
        for flat, host in on_host.values():
            flat.data[...] = backend.to_device(host, backend.device_of(flat.data))

    def replica(self, make_parameter=None) -> Module:
        """A copy of this module whose Parameters are new objects holding the same
        arrays (tied ones stay tied), so it computes with this module's current weights
        but its gradients go where its own Parameters send them; buffers are shared too.
        ``make_parameter(p)`` makes the copy's Parameter for ``p`` (default: a plain
        Parameter of ``p.data``). ``nn.DataParallel`` runs one per thread."""
        make_parameter = make_parameter or (lambda p: Parameter(p.data, p.requires_grad))
        memo = {id(p): make_parameter(p) for p in self.parameters()}
        for m in self.modules():
            for array in getattr(m, "_buffers", {}).values():
                memo[id(array)] = array
        return copy.deepcopy(self, memo)

    # -- modes and devices -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str | None = None, dtype=None) -> Module:
        """Move every parameter and buffer to ``device`` and/or cast floating ones to
        ``dtype``, in place (the Parameter objects stay the same: an optimizer made
        before follows them at its next step)."""
        for m in self.modules():
            for p in [v for v in vars(m).values() if isinstance(v, Parameter)]:
                data = p.data if device is None else backend.to_device(p.data, device)
                p.data = data if dtype is None else data.astype(dtype)
                if p.flat is not None:
                    p.flat.release(p)
                p.grad = None
            for name, buf in list(getattr(m, "_buffers", {}).items()):
                buf = buf if device is None else backend.to_device(buf, device)
                m._buffers[name] = buf if dtype is None else buf.astype(dtype)
        return self

    @property
    def device(self) -> str:
        params = self.parameters()
        return params[0].device if params else "cpu"

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else np.float32

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- display -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of modules whose parameters are named ``0.``, ``1.``, ..."""

    def __init__(self, modules=()):
        self._items = []
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._items)), module)
        self._items.append(module)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        return self._items[i]


@contextlib.contextmanager
def evaluating(model: Module):
    """Evaluation mode (dropout off) and no graph inside the block; the model's mode is
    restored after it."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield model
    finally:
        model.train(was_training)


def predict_in_batches(model: Module, fn, *arrays, batch_size: int = 128) -> np.ndarray:
    """``fn(*rows)`` (e.g. ``model`` or ``model.embed``) over batches of rows of the host
    arrays, moved to the model's device and evaluated with ``evaluating``; the outputs
    gathered into one NumPy array."""
    outputs = []
    with evaluating(model):
        for start in range(0, len(arrays[0]), batch_size):
            rows = [backend.to_device(a[start:start + batch_size], model.device) for a in arrays]
            outputs.append(fn(*rows).numpy())
    return np.concatenate(outputs)
