"""Grouped-query attention on the CPU: equal to ``ops.grouped_attention.GroupedQueryAttention``
(the same dropout mask, the same values to rounding), faster and in less memory.

- The textbook repeats each key/value head G times and runs attention per query head.
  Here each key/value head attends once for its whole group: query head h = j G + g is
  row block g of key/value head j, so q (B, H, Tq, Dh) read as (B, Hkv, G Tq, Dh) is one
  query of G Tq rows per key/value head, against that head's own keys and values,
  through the CPU attention (kernels/cpu/attention.py, by the one dispatch). K and V are
  never repeated, and dK, dV come out of the products already summed over the group.
- A causal attention whose queries are the last of its keys (Tq <= Tk) goes in up to
  ``CAUSAL_CHUNKS`` chunks of query positions (``query_chunks``), each against only the
  keys it may see. Query i sits at key position i + (Tk - Tq) (``future_keys``), so the
  chunk of queries a..b-1 sees keys 0..b-1 + (Tk - Tq) and no later ones. Every key a
  chunk leaves out has S = -inf for all of its queries, so exp(S) = 0 there: it changes
  neither a row's maximum, nor its sum, nor P V, and its dS is 0. So each chunk's softmax
  is the whole one, and the backward adds each chunk's dK and dV into the keys it saw
  (several chunks see the same key, as several query heads share one: a sum). With
  Tq = Tk, chunk i of C has Tq/C queries and sees i Tk/C keys, (C + 1) / 2C of the Tq x Tk
  score grid together (5/8 for 4 chunks), which is the share of the products, the softmax
  and the P kept. Chunks are taken only where the whole P would be kept; where the CPU
  attention would keep each row's log-sum-exp instead (long sequences,
  ``attention.recomputes``) the attention stays one piece and keeps that.
- The dropout mask is the textbook's, drawn for (B, H, Tq, Tk); each chunk reads its
  queries' rows and its keys' columns of it.
"""
from __future__ import annotations

import numpy as np

from ...backend import kernels
from ...ops.attention import ScaledDotProductAttention, future_keys
from ...ops.grouped_attention import GroupedQueryAttention
from ...tensor import Tensor
from .attention import recomputes

CAUSAL_CHUNKS = 4  # more chunks skip more of the triangle but make each chunk's products shorter
LEAST_CHUNK = 32  # positions: a causal attention over fewer than twice this many is one chunk


def query_chunks(Tq: int, Tk: int, causal: bool) -> list[tuple[int, int]]:
    """(first, stop) positions of the query chunks: up to ``CAUSAL_CHUNKS`` nearly equal
    ones (at least ``LEAST_CHUNK`` positions each) for a causal attention whose queries
    are the last of its keys (Tq <= Tk), else one (with Tq > Tk the first queries see no
    key at all, and a chunk could see fewer than none)."""
    count = max(1, min(CAUSAL_CHUNKS, Tq // LEAST_CHUNK)) if causal and Tq <= Tk else 1
    bounds = [Tq * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@kernels.register(GroupedQueryAttention, device="cpu")
class StackedGroupAttention(GroupedQueryAttention):
    def suits(self, q, k, v):  # a key-padding mask (B, Tk) or none; other masks take the textbook
        return self.mask is None or (self.mask.dtype == bool and self.mask.ndim == 2)

    def forward(self, q, k, v):
        B, H, Tq, Dh = q.shape
        Hkv, Tk = k.shape[1], k.shape[2]
        self.group = G = H // Hkv
        kept = not recomputes(B * H * Tq * Tk * q.dtype.itemsize)  # chunks keep P: only where the whole would be
        self.chunks = query_chunks(Tq, Tk, self.is_causal and kept)
        keep = self.dropout_draw(np, (B, H, Tq, Tk))
        by_group = q.reshape(B, Hkv, G, Tq, Dh)
        wants_grad = any(self.needs_input_grad)
        out = np.empty((B, Hkv, G, Tq, v.shape[-1]), dtype=q.dtype) if len(self.chunks) > 1 else None
        self.parts = []
        for first, stop in self.chunks:
            rows, keys = stop - first, stop + Tk - Tq  # the chunk's last query sees keys 0..keys-1
            allowed = None                                          # True where a stacked row may see a key
            if self.is_causal:  # the chunk's queries are the last of those keys: future_keys' own convention
                allowed = np.tile(~future_keys(np, rows, keys), (G, 1))[None, None]  # (1, 1, G rows, keys)
            if self.mask is not None:
                padding = self.mask[:, None, None, :keys]           # (B, 1, 1, keys)
                allowed = padding if allowed is None else padding & allowed
            part_keep = None if keep is None else \
                keep.reshape(B, Hkv, G, Tq, Tk)[:, :, :, first:stop, :keys].reshape(B, Hkv, G * rows, keys)
            part = ScaledDotProductAttention(allowed, self.dropout_p, self.training, False, part_keep)
            inputs = (by_group[:, :, :, first:stop].reshape(B, Hkv, G * rows, Dh), k[:, :, :keys], v[:, :, :keys])
            part_out = part(*(Tensor(a, requires_grad=wants_grad) for a in inputs)).data
            self.parts.append(part)
            if len(self.chunks) == 1:
                return part_out.reshape(B, H, Tq, v.shape[-1])
            out[:, :, :, first:stop] = part_out.reshape(B, Hkv, G, rows, -1)
        self.kv_shapes = k.shape, v.shape
        return out.reshape(B, H, Tq, v.shape[-1])

    def backward(self, g):
        B, H, Tq, Dv = g.shape
        G = self.group
        by_group = g.reshape(B, H // G, G, Tq, Dv)
        if len(self.parts) == 1:
            dq, dk, dv = self.parts[0].backward(by_group.reshape(B, H // G, G * Tq, Dv))
            return dq.reshape(B, H, Tq, dq.shape[-1]), dk, dv
        (k_shape, v_shape), grad_q = self.kv_shapes, None
        for part, (first, stop) in zip(self.parts, self.chunks):
            rows = stop - first
            dq, dk, dv = part.backward(by_group[:, :, :, first:stop].reshape(B, H // G, G * rows, Dv))
            if grad_q is None:
                grad_q = np.empty((B, H // G, G, Tq, dq.shape[-1]), dtype=dq.dtype)
                grad_k, grad_v = np.zeros(k_shape, dtype=dk.dtype), np.zeros(v_shape, dtype=dv.dtype)
            grad_q[:, :, :, first:stop] = dq.reshape(B, H // G, G, rows, -1)
            grad_k[:, :, :dk.shape[2]] += dk
            grad_v[:, :, :dv.shape[2]] += dv
        return grad_q.reshape(B, H, Tq, grad_q.shape[-1]), grad_k, grad_v

    def saved_arrays(self) -> dict:
        """What the chunks keep: each chunk's arrays under its queries' positions, but k and v
        once (each chunk keeps a view of the keys it saw; the last saw them all)."""
        parts = getattr(self, "parts", None) or []
        if len(parts) == 1:
            return parts[0].saved_arrays()
        saved = {}
        for part, (first, stop) in zip(parts, self.chunks):
            for name, array in part.saved_arrays().items():  # k, v: each chunk's overwrites the last, all of them
                saved[name if name in ("k", "v") else f"{name} (queries {first}:{stop})"] = array
        return saved

    def release(self) -> None:
        super().release()
        self.parts = None
