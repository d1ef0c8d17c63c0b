"""Flat parameter buffers: a model's parameters as views into one contiguous array per
dtype and device, and their gradients as views into a second one.

An optimizer step, clipping, a checkpoint and a data-parallel all-reduce then each work
on one array instead of one per parameter. The Parameter objects, their shapes and
their names stay as they were: only ``p.data`` becomes a view, and ``p.grad``, once a
backward has given it a value, is a view too: the buffer registers a hook on each
parameter (``Tensor.register_post_accumulate_grad_hook``) that moves its first gradient
into its slot, where the later ones are added in place.

    buffers = flatten(model.parameters())   # the optimizers do this themselves
    buffers[0].data, buffers[0].grad        # all float32 CPU parameters, their gradients

This module is the one place that knows whether the flat arrays are the parameters
(``holds``, ``holds_parameters``) and their gradients (``has_all_gradients``).
"""
from __future__ import annotations

import threading

from .. import backend
from ..errors import ArgumentError

_MAKING_GRAD = threading.Lock()  # replicas in threads may bring a buffer's first gradients at once


class FlatBuffer:
    """Parameters of one dtype and device laid end to end in ``data``; ``grad`` (made
    on first use) holds their gradients in the same layout. ``offsets[i]`` is where
    parameter i starts."""

    def __init__(self, params):
        first = params[0]
        xp = backend.get_array_module(first.data)
        self.params = list(params)
        self.offsets, self._index, total = [], {}, 0
        for i, p in enumerate(self.params):
            self.offsets.append(total)
            self._index[id(p)] = i
            total += p.size
        self.size = total
        self.data = xp.empty(total, dtype=first.dtype)
        self._grad, self._grad_slots = None, None
        self._hooks = []
        for p, view in zip(self.params, self.views_of(self.data)):
            view[...] = p.data
            if getattr(p, "flat", None) is not None:
                p.flat.release(p)
            p.data, p.flat = view, self
            self._hooks.append(p.register_post_accumulate_grad_hook(self._into_slot))
        self._data_views = [p.data for p in self.params]

    def views_of(self, flat):
        """Each parameter's piece of ``flat`` (an array in this buffer's layout), shaped
        like the parameter."""
        return [flat[o:o + p.size].reshape(p.shape) for p, o in zip(self.params, self.offsets)]

    def piece(self, flat, param):
        """``param``'s piece of ``flat`` (an array in this buffer's layout)."""
        start = self.offsets[self._index[id(param)]]
        return flat[start:start + param.size].reshape(param.shape)

    @property
    def grad(self):
        """The gradient buffer (zeros when first made); each parameter's slot in it
        receives that parameter's gradient."""
        return self.make_grad()

    def make_grad(self):
        """The gradient buffer, made on the first call (a parameter's first gradient)."""
        if self._grad is None:
            with _MAKING_GRAD:
                if self._grad is None:
                    grad = backend.get_array_module(self.data).zeros_like(self.data)
                    self._grad_slots = self.views_of(grad)
                    self._grad = grad
        return self._grad

    def slot(self, param):
        """``param``'s view of the gradient buffer (its gradient, once a backward has given it one)."""
        self.make_grad()
        return self._grad_slots[self._index[id(param)]]

    def holds(self, param) -> bool:
        """True while ``param``'s data is its view of ``data`` (moving a model with
        ``to()`` or assigning ``p.data`` ends that)."""
        i = self._index.get(id(param))
        return i is not None and param.flat is self and param.data is self._data_views[i]

    def holds_parameters(self) -> bool:
        """True while every parameter's data is still its view of ``data``."""
        return all(p.flat is self and p.data is view for p, view in zip(self.params, self._data_views))

    def has_all_gradients(self) -> bool:
        """True when every parameter's gradient is its slot of ``grad``, so ``grad`` is
        the whole gradient (after a backward that reached every parameter)."""
        return self._grad is not None and self.holds_parameters() and \
            all(p.grad is slot for p, slot in zip(self.params, self._grad_slots))

    def gather_gradients(self):
        """``grad`` made the whole gradient: a gradient that is not in its slot (set by
        hand) is copied there, and a parameter without one gets zeros (a collective
        then sums it as zero)."""
        grad = self.make_grad()
        for p, slot in zip(self.params, self._grad_slots):
            if p.grad is not slot:
                slot[...] = 0 if p.grad is None else p.grad
                p.grad = slot
        return grad

    def _into_slot(self, param) -> None:
        """The hook each parameter calls when a gradient has been added into its
        ``.grad``: a gradient that is not in its slot yet moves there."""
        if param.grad is not None and self.holds(param):
            slot = self.slot(param)
            if param.grad is not slot:
                slot[...] = param.grad
                param.grad = slot

    def release(self, param) -> None:
        """``param`` leaves this buffer (it moves, or joins another): its hook is
        removed and the buffer no longer holds it."""
        i = self._index[id(param)]
        self._hooks[i].remove()
        if param.flat is self:
            param.flat = None

    def __repr__(self):
        return f"FlatBuffer({len(self.params)} parameters, {self.size} {self.data.dtype} on {backend.device_of(self.data)})"


def flatten(params) -> list[FlatBuffer]:
    """Put ``params`` into one FlatBuffer per (device, dtype), in order of first
    appearance; parameters already together in a buffer that still holds them (and no
    others) keep it. A parameter listed twice counts once."""
    unique, seen = [], set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    if not unique:
        raise ArgumentError("flatten: got no parameters")
    groups = {}
    for p in unique:
        groups.setdefault((p.device, p.dtype.str), []).append(p)
    buffers = []
    for members in groups.values():
        current = getattr(members[0], "flat", None)
        if current is not None and len(current.params) == len(members) and \
                all(a is b for a, b in zip(current.params, members)) and current.holds_parameters():
            buffers.append(current)
        else:
            buffers.append(FlatBuffer(members))
    return buffers
