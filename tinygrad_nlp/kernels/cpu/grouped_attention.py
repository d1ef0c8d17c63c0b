"""Grouped-query attention on the CPU: equal to ``ops.grouped_attention.GroupedQueryAttention``
(the same dropout mask, the same values to rounding), faster and in less memory.

The textbook repeats each key/value head G times and runs attention per query head. Here
each key/value head attends once for its whole group: query head h = j G + g is row block
g of key/value head j, so q (B, H, Tq, Dh) read as (B, Hkv, G Tq, Dh) (a reshape, no copy)
is one query of G Tq rows per key/value head, against that head's own keys and values,
through the CPU attention (kernels/cpu/attention.py, by the one dispatch). The causal
triangle becomes G copies of it stacked; the dropout mask drawn for (B, H, Tq, Tk) is the
same array read as (B, Hkv, G Tq, Tk). K and V are never repeated, what is saved is the
textbook's without the G copies of k and v, and dK, dV come out of the products already
summed over the group.
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.attention import ScaledDotProductAttention, future_keys
from ...ops.grouped_attention import GroupedQueryAttention
from ...tensor import Tensor


@kernels.register(GroupedQueryAttention, device="cpu")
class StackedGroupAttention(GroupedQueryAttention):
    def suits(self, q, k, v):  # a key-padding mask (B, Tk) or none; other masks take the textbook
        return self.mask is None or (self.mask.dtype == bool and self.mask.ndim == 2)

    def forward(self, q, k, v):
        B, H, Tq, Dh = q.shape
        Hkv, Tk = k.shape[1], k.shape[2]
        self.group = G = H // Hkv
        allowed = None                                             # True where a stacked row may see a key
        if self.is_causal:
            allowed = np.tile(~future_keys(np, Tq, Tk), (G, 1))[None, None]  # (1, 1, G Tq, Tk)
        if self.mask is not None:
            padding = self.mask[:, None, None, :]                  # (B, 1, 1, Tk)
            allowed = padding if allowed is None else padding & allowed
        keep = self.dropout_draw(np, (B, H, Tq, Tk))
        self.stacked = ScaledDotProductAttention(allowed, self.dropout_p, self.training, False,
                                                 None if keep is None else keep.reshape(B, Hkv, G * Tq, Tk))
        wants_grad = any(self.needs_input_grad)
        q, k, v = (Tensor(a, requires_grad=wants_grad) for a in (q.reshape(B, Hkv, G * Tq, Dh), k, v))
        return self.stacked(q, k, v).data.reshape(B, H, Tq, v.shape[-1])

    def backward(self, g):
        B, H, Tq, Dv = g.shape
        grad_q, grad_k, grad_v = self.stacked.backward(g.reshape(B, H // self.group, self.group * Tq, Dv))
        return grad_q.reshape(B, H, Tq, grad_q.shape[-1]), grad_k, grad_v

    def saved_arrays(self) -> dict:
        stacked = getattr(self, "stacked", None)
        return {} if stacked is None else stacked.saved_arrays()

    def release(self) -> None:
        super().release()
        self.stacked = None
