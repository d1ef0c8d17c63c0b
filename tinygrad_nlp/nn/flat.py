"""Flat parameter buffers: a model's parameters as views into one contiguous array per
dtype and device, and their gradients as views into a second one.

An optimizer step, clipping, a checkpoint and a data-parallel all-reduce then each work
on one array instead of one per parameter. The Parameter objects, their shapes and
their names stay as they were: only ``p.data`` becomes a view, and ``p.grad``, once a
backward has given it a value, is a view too (``Parameter`` accumulates into its slot).

    buffers = flatten(model.parameters())   # the optimizers do this themselves
    buffers[0].data, buffers[0].grad        # all float32 CPU parameters, their gradients
"""
from __future__ import annotations

from .. import backend
from ..errors import ArgumentError


class FlatBuffer:
    """Parameters of one dtype and device laid end to end in ``data``; ``grad`` (made
    on first use) holds their gradients in the same layout. ``offsets[i]`` is where
    parameter i starts."""

    def __init__(self, params):
        first = params[0]
        xp = backend.get_array_module(first.data)
        self.params = list(params)
        self.offsets, self._offset_of, total = [], {}, 0
        for p in self.params:
            self.offsets.append(total)
            self._offset_of[id(p)] = total
            total += p.size
        self.size = total
        self.data = xp.empty(total, dtype=first.dtype)
        self._grad = None
        for p, view in zip(self.params, self.views_of(self.data)):
            view[...] = p.data
            p.data = view
            p.flat, p.grad_slot = self, None
        self._data_views = [p.data for p in self.params]

    def views_of(self, flat):
        """Each parameter's piece of ``flat`` (an array in this buffer's layout), shaped
        like the parameter."""
        return [flat[o:o + p.size].reshape(p.shape) for p, o in zip(self.params, self.offsets)]

    def piece(self, flat, param):
        """``param``'s piece of ``flat`` (an array in this buffer's layout)."""
        start = self._offset_of[id(param)]
        return flat[start:start + param.size].reshape(param.shape)

    @property
    def grad(self):
        """The gradient buffer (zeros when first made); each parameter's slot in it
        receives that parameter's gradient."""
        return self.make_grad()

    def make_grad(self):
        """The gradient buffer, made on the first call (a parameter's first gradient),
        when every parameter gets its slot (``grad_slot``) in it."""
        if self._grad is None:
            xp = backend.get_array_module(self.data)
            self._grad = xp.zeros_like(self.data)
            for p, slot in zip(self.params, self.views_of(self._grad)):
                p.grad_slot = slot
        return self._grad

    def holds_parameters(self) -> bool:
        """True while every parameter's data is still its view of ``data`` (moving a
        model with ``to()`` or assigning ``p.data`` ends that)."""
        return all(p.data is view for p, view in zip(self.params, self._data_views))

    def has_all_gradients(self) -> bool:
        """True when every parameter's gradient is its slot of ``grad``, so ``grad`` is
        the whole gradient (after a backward that reached every parameter)."""
        return self._grad is not None and self.holds_parameters() and \
            all(p.grad is not None and p.grad is p.grad_slot for p in self.params)

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
