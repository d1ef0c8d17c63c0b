"""Optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate schedules.

Updates are made in place with ``out=`` arguments and buffers allocated once, so a step
allocates no new parameter-sized arrays.
"""
from __future__ import annotations

import math
import pathlib
from typing import NamedTuple

import numpy as np

from . import backend
from .backend import kernels
from .errors import ArgumentError, CheckpointError
from .nn.flat import flatten

_ADAM_KERNEL = pathlib.Path(__file__).with_name("adam.cu")  # the whole step in one launch on the GPU


class BufferState:
    """An optimizer's state of one flat buffer's parameters: per name ("exp_avg", ...)
    one array in the buffer's layout (``arrays``), zeros where a parameter has not been
    updated yet. ``entries[k]``, the buffer's parameter k's dict in ``Optimizer.state``,
    holds views of these arrays, one for each name it has been updated with: the state
    is one copy, seen whole or parameter by parameter."""

    def __init__(self, buffer, entries):
        self.buffer, self.entries, self.arrays = buffer, entries, {}

    def array(self, name: str, k: int | None = None):
        """State ``name`` of the buffer's parameter ``k`` (a view), or of the whole
        buffer (``k`` None), zeros when first asked for; the parameters it covers get
        their entry."""
        flat = self.arrays.get(name)
        if flat is None:
            xp = backend.get_array_module(self.buffer.data)
            flat = self.arrays[name] = xp.zeros(self.buffer.size, dtype=self.buffer.data.dtype)
        for j in range(len(self.entries)) if k is None else (k,):
            if name not in self.entries[j]:
                self.entries[j][name] = self.buffer.piece(flat, self.buffer.params[j])
        return flat if k is None else self.entries[k][name]

    def of(self, k: int | None = None) -> StateArrays:
        """The state of parameter ``k``'s update (the whole buffer's when None)."""
        return StateArrays(self, k)

    def clear(self) -> None:
        """No state: every parameter as before its first update."""
        self.arrays = {}
        for entries in self.entries:
            entries.clear()


class StateArrays:
    """The state arrays one update reads and writes, by name (``state["exp_avg"]``):
    the whole buffer's, or one parameter's views of them."""

    def __init__(self, state: BufferState, k: int | None):
        self.state, self.k = state, k

    def __getitem__(self, name: str):
        return self.state.array(name, self.k)


class WorkArrays:
    """Arrays the updates write their intermediate values into, kept from step to step:
    one per use, dtype and device, as long as the longest asked for. Not state: never
    saved."""

    def __init__(self):
        self._arrays = {}

    def like(self, use: str, array):
        """A work array for ``use`` of ``array``'s shape, dtype and device."""
        xp = backend.get_array_module(array)
        key = (use, xp, array.dtype.str)
        if key not in self._arrays or self._arrays[key].size < array.size:
            self._arrays[key] = xp.empty(array.size, dtype=array.dtype)
        return self._arrays[key][: array.size].reshape(array.shape)


def _with_l2_decay(p, g, weight_decay: float, work: WorkArrays):
    """g + weight_decay * p (L2 decay, added to the gradient) in a work array, or g
    itself without weight decay."""
    if not weight_decay:
        return g
    decayed = work.like("decayed gradient", p)
    backend.get_array_module(p).multiply(p, weight_decay, out=decayed)
    decayed += g
    return decayed


class Optimizer:
    """Base of the optimizers. The parameters are flattened (``nn.flat``) when the
    optimizer is made (``buffers``), and their state is kept the same way: one array per
    buffer and name (``flat_state[j]``, a ``BufferState``), of which each parameter's
    entries in ``state[i]`` are views, made at its first update (a parameter never
    updated has none, as in PyTorch). When a
    backward has given every parameter of a buffer its gradient
    (``FlatBuffer.has_all_gradients``), ``step`` updates the whole buffer at once;
    otherwise each parameter with a gradient alone. Both give the same numbers
    (PyTorch's). Parameters moved after the optimizer was made (``Module.to``) are
    flattened again at the next step, their state moving along."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        if not self.params:
            raise ArgumentError(f"{type(self).__name__}: got no parameters to optimize (an empty parameter list)")
        if lr < 0:
            raise ArgumentError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.step_count = 0
        self.state = [dict() for _ in self.params]
        self._work = WorkArrays()
        self._flatten()

    def _flatten(self) -> None:
        """Flatten the parameters (``buffers``) and lay out their state the same way
        (``flat_state``; ``_place[i]``: parameter i's buffer state and place in it)."""
        self.buffers = flatten(self.params)
        index = {id(p): i for i, p in enumerate(self.params)}
        self.flat_state = [BufferState(b, [self.state[index[id(p)]] for p in b.params]) for b in self.buffers]
        self._place = {index[id(p)]: (state, k) for state in self.flat_state for k, p in enumerate(state.buffer.params)}

    def _follow_moved_parameters(self) -> None:
        """Parameters given new arrays since they were flattened (``Module.to``, an
        assignment to ``p.data``) go into new flat buffers, their state moving along."""
        if not all(state.buffer.holds_parameters() for state in self.flat_state):
            saved = self.state_dict()
            self._flatten()
            self.load_state_dict(saved)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self._follow_moved_parameters()
        self.step_count += 1
        for state in self.flat_state:
            buffer = state.buffer
            if buffer.has_all_gradients():
                self._update(buffer.data, buffer.grad, state.of())
                continue
            for k, p in enumerate(buffer.params):
                if p.grad is not None:
                    self._update(p.data, p.grad, state.of(k))

    def state_dict(self) -> dict:
        """Hyper-parameters and per-parameter buffers (as host arrays)."""
        return {
            "type": type(self).__name__,
            "lr": self.lr,
            "step_count": self.step_count,
            "state": [{k: backend.asnumpy(v).copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise CheckpointError(f"optimizer state is for {state.get('type')}, not {type(self).__name__}")
        if len(state["state"]) != len(self.params):
            raise CheckpointError(
                f"optimizer state has {len(state['state'])} parameters, the optimizer has {len(self.params)}")
        self._follow_moved_parameters()
        for i, (p, s) in enumerate(zip(self.params, state["state"])):
            for name, value in s.items():
                if tuple(value.shape) != p.shape:
                    raise CheckpointError(f"optimizer buffer {name!r} of parameter {i} has shape "
                                          f"{tuple(value.shape)}, the parameter {p.shape}")
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for buffer_state in self.flat_state:
            buffer_state.clear()
        for i, s in enumerate(state["state"]):
            buffer_state, k = self._place[i]
            xp = backend.get_array_module(buffer_state.buffer.data)
            for name, value in s.items():
                view = buffer_state.array(name, k)
                view[...] = xp.asarray(value, dtype=view.dtype)


class SGD(Optimizer):
    """p -= lr * b with b = momentum * b + (g + weight_decay * p) (PyTorch's SGD, no
    dampening; b = g when momentum is 0). b starts at zero, so its first value is g, as
    PyTorch's."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay

    def _update(self, p, g, state):
        g = _with_l2_decay(p, g, self.weight_decay, self._work)
        if self.momentum:
            momentum = state["momentum"]
            momentum *= self.momentum
            momentum += g
            g = momentum
        xp = backend.get_array_module(p)

        def update(p_, g_, step):
            xp.multiply(g_, self.lr, out=step)
            p_ -= step
        backend.threads.update_in_cache_blocks((p, g), update, lambda shape: self._work.like("step", p), 2 * p.itemsize)


class AdamStep(NamedTuple):
    """The numbers of one Adam update, the two bias corrections folded into the step
    size and epsilon: p -= step_size * m / (sqrt(v) + eps), after p *= shrink (AdamW's
    decoupled decay, 1 - lr * weight_decay) and with l2_decay * p added to the gradient
    (Adam's weight decay)."""
    b1: float
    b2: float
    step_size: float
    eps: float
    l2_decay: float
    shrink: float


class Adam(Optimizer):
    """Adam (Kingma & Ba), as PyTorch's ``torch.optim.Adam``: weight decay is L2, added
    to the gradient; m and v are bias-corrected:
        g += wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    The update has a generic path and, on the GPU, a fused kernel that makes the whole
    step over a flat buffer one launch (adam.cu); ``backend.kernels.dispatch`` chooses."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def _update(self, p, g, state):
        b1, b2 = self.betas
        t = self.step_count
        # lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), the two bias
        # corrections folded into the step size and epsilon (one pass fewer)
        root_c2 = math.sqrt(1 - b2 ** t)
        decoupled = self.decoupled and self.weight_decay
        numbers = AdamStep(b1, b2, step_size=self.lr * root_c2 / (1 - b1 ** t), eps=self.eps * root_c2,
                           l2_decay=0.0 if self.decoupled else self.weight_decay,
                           shrink=1 - self.lr * self.weight_decay if decoupled else 1.0)
        _adam_step(p, g, state["exp_avg"], state["exp_avg_sq"], numbers, self._work)


def _adam_step_generic(p, g, m, v, numbers: AdamStep, work: WorkArrays):
    """Adam's update of p, m and v in place, in cache-sized pieces split across the cores on the CPU."""
    xp = backend.get_array_module(p, g)
    b1, b2, step_size, eps = numbers.b1, numbers.b2, numbers.step_size, numbers.eps
    g = _with_l2_decay(p, g, numbers.l2_decay, work)
    if numbers.shrink != 1.0:
        p *= numbers.shrink

    def update(p_, g_, m_, v_, s_):
        m_ *= b1
        xp.multiply(g_, 1 - b1, out=s_)
        m_ += s_
        v_ *= b2
        xp.multiply(g_, g_, out=s_)
        s_ *= 1 - b2
        v_ += s_
        xp.sqrt(v_, out=s_)
        s_ += eps
        xp.divide(m_, s_, out=s_)
        s_ *= step_size
        p_ -= s_
    # m and v are read by every pass: 2 * itemsize bytes per element in a cache-sized piece
    backend.threads.update_in_cache_blocks((p, g, m, v), update, lambda shape: work.like("step", p), 2 * p.itemsize)


def _adam_step_kernel(p, g, m, v, numbers: AdamStep, work: WorkArrays):
    """The same update in one launch over the flat buffer (adam.cu)."""
    b1, b2 = numbers.b1, numbers.b2
    scalars = (b1, 1 - b1, b2, 1 - b2, numbers.step_size, numbers.eps, numbers.l2_decay, numbers.shrink)
    kernels.launch_flat(_ADAM_KERNEL, "adam", p, (p, g, m, v, np.int64(p.size)) + tuple(p.dtype.type(s) for s in scalars))


_adam_step = kernels.dispatch("adam", generic=_adam_step_generic, kernel=_adam_step_kernel,
                              applies=lambda p, g, m, v, *_: all(a.flags.c_contiguous for a in (p, g, m, v)))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``:
    p *= 1 - lr * wd before the Adam update (default wd 0.01)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def create_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> Optimizer:
    """An optimizer by name, as the examples' ``--optimizer`` flag gives it: "adam",
    "adamw", or "sgd" (with momentum 0.9)."""
    if name not in OPTIMIZERS:
        raise ArgumentError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    momentum = {"momentum": 0.9} if name == "sgd" else {}
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **momentum)


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients in place so their joint L2 norm is at most ``max_norm``;
    return the norm before clipping. Flat gradient buffers wholly among ``params`` are
    read and scaled as one array each."""
    unique = list({id(p): p for p in params}.values())
    ids = set({id(p) for p in unique})
    whole = {id(p.flat): p.flat for p in unique if getattr(p, "flat", None) is not None}
    whole = [b for b in whole.values() if b.has_all_gradients() and all(id(q) in ids for q in b.params)]
    covered = {id(q) for b in whole for q in b.params}
    grads = [b.grad for b in whole] + [p.grad for p in unique if id(p) not in covered and p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    total = math.sqrt(sum(float(xp.vdot(g.ravel(), g.ravel())) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


# -- learning-rate schedules: functions of the step (0-based) giving a factor of the base lr
def constant_schedule():
    return lambda step: 1.0


def linear_schedule(warmup: int, total: int):
    """Linear warm-up over ``warmup`` steps to the base rate, then linear decay to 0 at ``total``."""
    def factor(step):
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def cosine_schedule(warmup: int, total: int, min_factor: float = 0.0):
    """Linear warm-up, then a cosine decay from 1 to ``min_factor`` at ``total``."""
    def factor(step):
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def warmup_schedule(warmup: int):
    """Linear warm-up, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0


class LRScheduler:
    """Sets ``optimizer.lr = base_lr * factor(step)``; call ``step()`` after each
    optimizer step. ``factor`` is one of the schedules above."""

    def __init__(self, optimizer: Optimizer, factor):
        self.optimizer, self.factor = optimizer, factor
        self.base_lr = optimizer.lr
        self.last_step = 0
        optimizer.lr = self.base_lr * factor(0)

    def step(self) -> None:
        self.last_step += 1
        self.optimizer.lr = self.base_lr * self.factor(self.last_step)

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state):
        self.base_lr, self.last_step = state["base_lr"], state["last_step"]
        self.optimizer.lr = self.base_lr * self.factor(self.last_step)
