"""Optimizers (SGD, Adam, AdamW), gradient clipping and learning-rate schedules.

Updates are made in place with ``out=`` arguments and buffers allocated once, so a step
allocates no new parameter-sized arrays.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np

from . import backend
from .backend import kernels
from .errors import ArgumentError, CheckpointError
from .nn.flat import flatten

_SCRATCH = ("decayed_grad",)  # per-step work buffers, not state
_ADAM_KERNEL = pathlib.Path(__file__).with_name("adam.cu")  # the whole step in one launch on the GPU


class Optimizer:
    """Base of the optimizers. The parameters are flattened (``nn.flat``) when the
    optimizer is made: while a buffer holds its parameters and a backward has given
    every one of them a gradient, ``step`` updates the whole buffer at once, with the
    state (moments) in flat arrays of the same layout; otherwise each parameter with a
    gradient is updated alone. Both give the same numbers (PyTorch's), and the
    per-parameter state seen by ``state_dict`` is the same either way: its arrays are
    views of the flat ones."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        if not self.params:
            raise ArgumentError(f"{type(self).__name__}: got no parameters to optimize (an empty parameter list)")
        if lr < 0:
            raise ArgumentError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.step_count = 0
        self.state = [dict() for _ in self.params]
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.buffers = flatten(self.params)
        self._flat_state = {}  # id(buffer) -> {name: flat array}
        self._shared = {}  # id(buffer) -> {name: (flat array, the per-parameter views given out)}
        self._work = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.step_count += 1
        for buffer in self.buffers:
            flat_state = self._state_of_buffer(buffer) if buffer.has_all_gradients() else None
            if flat_state is not None:
                self._update(buffer.data, buffer.grad, flat_state)
                self._share(buffer, flat_state)
                continue
            for p in buffer.params:
                if p.grad is not None:
                    self._update(p.data, p.grad, self.state[self._index[id(p)]])

    def _state_of_buffer(self, buffer):
        """{name: flat array} of the state of ``buffer``'s parameters, in its layout,
        rebuilt from the per-parameter state when that was replaced (``load_state_dict``,
        a per-parameter step); None when the parameters differ in which entries they
        have (then each is updated alone)."""
        states = [self.state[self._index[id(p)]] for p in buffer.params]
        names = {name for s in states for name in s if name not in _SCRATCH}
        if any(name not in s for s in states for name in names):
            return None
        flat = self._flat_state.setdefault(id(buffer), {})
        shared = self._shared.setdefault(id(buffer), {})
        for name in [n for n in flat if n not in names and n not in _SCRATCH]:
            del flat[name]
            shared.pop(name, None)
        for name in names:
            array, views = shared.get(name, (None, ()))
            if array is None or array is not flat.get(name) or any(s[name] is not v for s, v in zip(states, views)):
                array = backend.get_array_module(buffer.data).empty(buffer.size, dtype=buffer.data.dtype)
                for p, s in zip(buffer.params, states):
                    buffer.piece(array, p)[...] = s[name]
                flat[name] = array
        return flat

    def _share(self, buffer, flat):
        """Make each parameter's state entries views of the flat arrays."""
        shared = self._shared[id(buffer)]
        for name, array in flat.items():
            if name in _SCRATCH or shared.get(name, (None,))[0] is array:
                continue
            views = buffer.views_of(array)
            for p, view in zip(buffer.params, views):
                self.state[self._index[id(p)]][name] = view
            shared[name] = (array, views)

    def _buffer(self, state, name, like):
        if name not in state:
            xp = backend.get_array_module(like)
            state[name] = xp.zeros_like(like)
        return state[name]

    def _scratch(self, like):
        """A work buffer of ``like``'s shape for updates of whole arrays (``in_pieces``),
        one per dtype and device shared by all parameters."""
        def of_shape(shape):
            xp = backend.get_array_module(like)
            key = (xp, like.dtype.str)
            if key not in self._work or self._work[key].size < like.size:
                self._work[key] = xp.empty(like.size, dtype=like.dtype)
            return self._work[key][: like.size].reshape(shape)
        return of_shape

    def _with_weight_decay(self, p, g, state):
        """g + weight_decay * p (L2 decay, added to the gradient), in a buffer of the
        parameter's, or g itself without weight decay."""
        if not self.weight_decay:
            return g
        decayed = self._buffer(state, "decayed_grad", p)
        backend.get_array_module(p).multiply(p, self.weight_decay, out=decayed)
        decayed += g
        return decayed

    def state_dict(self) -> dict:
        """Hyper-parameters and per-parameter buffers (as host arrays)."""
        return {
            "type": type(self).__name__,
            "lr": self.lr,
            "step_count": self.step_count,
            "state": [{k: backend.asnumpy(v).copy() for k, v in s.items() if k not in _SCRATCH} for s in self.state],
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise CheckpointError(f"optimizer state is for {state.get('type')}, not {type(self).__name__}")
        if len(state["state"]) != len(self.params):
            raise CheckpointError(
                f"optimizer state has {len(state['state'])} parameters, the optimizer has {len(self.params)}")
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for i, (p, s) in enumerate(zip(self.params, state["state"])):
            xp = backend.get_array_module(p.data)
            for name, value in s.items():
                if tuple(value.shape) != p.shape:
                    raise CheckpointError(f"optimizer buffer {name!r} of parameter {i} has shape "
                                          f"{tuple(value.shape)}, the parameter {p.shape}")
            self.state[i] = {k: xp.asarray(v, dtype=p.dtype).copy() for k, v in s.items()}


class SGD(Optimizer):
    """p -= lr * b with b = momentum * b + (g + weight_decay * p) (PyTorch's SGD, no
    dampening; b = g when momentum is 0)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay

    def _update(self, p, g, state):
        g = self._with_weight_decay(p, g, state)
        if self.momentum:
            if "momentum" not in state:
                state["momentum"] = g.copy()
            else:
                state["momentum"] *= self.momentum
                state["momentum"] += g
            g = state["momentum"]
        xp = backend.get_array_module(p)

        def update(p_, g_, step):
            xp.multiply(g_, self.lr, out=step)
            p_ -= step
        backend.threads.in_pieces((p, g), update, self._scratch(p), 2 * p.itemsize)


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
        m = self._buffer(state, "exp_avg", p)
        v = self._buffer(state, "exp_avg_sq", p)
        # lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), the two bias
        # corrections folded into the step size and epsilon (one pass fewer)
        root_c2 = math.sqrt(1 - b2 ** t)
        step_size = self.lr * root_c2 / (1 - b1 ** t)
        eps = self.eps * root_c2
        _adam_step(p, g, m, v, self, state, step_size, eps)


def _adam_step_generic(p, g, m, v, adam, state, step_size, eps):
    """Adam's update of p, m and v in place, in cache-sized pieces split across the cores on the CPU."""
    xp = backend.get_array_module(p, g)
    b1, b2 = adam.betas
    if not adam.decoupled:
        g = adam._with_weight_decay(p, g, state)
    elif adam.weight_decay:
        p *= 1 - adam.lr * adam.weight_decay

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
    backend.threads.in_pieces((p, g, m, v), update, adam._scratch(p), 2 * p.itemsize)  # m and v: read by every pass


def _adam_step_kernel(p, g, m, v, adam, state, step_size, eps):
    """The same update in one launch over the flat buffer (adam.cu)."""
    b1, b2 = adam.betas
    wd_l2, shrink = (0.0, 1 - adam.lr * adam.weight_decay) if adam.decoupled else (adam.weight_decay, 1.0)
    scalars = (b1, 1 - b1, b2, 1 - b2, step_size, eps, wd_l2, shrink)
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
