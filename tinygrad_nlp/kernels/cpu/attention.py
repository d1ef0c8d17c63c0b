"""Attention on the CPU: equal to ``ops.attention``'s three ops (the same mask drawn,
the same values to rounding), faster.

- ``BlockedAttention`` equals ``ScaledDotProductAttention``. It goes through the batch
  in blocks whose (H, Tq, Tk) scores fit in the cache (``rows_per_block``): scaling,
  masking, softmax and dropout each pass over a block while it is still there, instead
  of each reading and writing the whole (B, H, Tq, Tk) array from memory. The scores
  are made in place in the buffer P is kept in, the softmax is the row-softmax engine
  (``row_softmax``: block-shared maxima, BLAS row sums, in place) and the dropout mask
  is applied scale-first and in place (``dropout.apply_mask``); the backward writes
  each block's gradients straight into the outputs.
- ``RecomputedAttention`` equals ``ScaledDotProductAttention`` at long sequences, where
  P would take more than ``KEEP_PROBABILITIES_UP_TO`` bytes: it keeps each row's
  log-sum-exp instead of P and makes P = exp(S - lse) again, block by block, in the
  backward: one more Q K^T product for the memory of the whole P (the flash-attention
  idea, in NumPy). It is registered first, so it is taken where its ``suits`` holds.
- ``RecomputedPackedSelfAttention`` and ``BlockedPackedSelfAttention`` equal
  ``PackedSelfAttention``: its own head split and merge around the two above (its
  ``super()`` calls reach them, by the order of the bases).
- ``RecomputedRaggedSelfAttention`` and ``BlockedRaggedSelfAttention`` equal
  ``RaggedSelfAttention``: each sequence runs the blocked or the recomputing path,
  chosen once by the bytes of every sequence's P together.
"""
from __future__ import annotations

import math

import numpy as np

from ...backend import kernels, rows_per_block
from ...ops.attention import PackedSelfAttention, RaggedSelfAttention, ScaledDotProductAttention, expand_mask, future_keys
from ...ops.dropout import keep_scale
from .dropout import apply_mask
from .row_softmax import exp_rows, softmax_backward_rows, softmax_rows

# Above this many bytes of probabilities (B H Tq Tk) an attention call keeps each row's
# log-sum-exp instead and makes P again, a batch block at a time, in the backward.
KEEP_PROBABILITIES_UP_TO = 32 << 20


def recomputes(probability_bytes: int) -> bool:
    """Whether P of this many bytes is made again in the backward instead of kept."""
    return probability_bytes > KEEP_PROBABILITIES_UP_TO


class BlockedAttention(ScaledDotProductAttention):
    """Registered below, after ``RecomputedAttention`` (which extends it)."""

    def forward(self, q, k, v):
        B, H, Tq, _ = q.shape
        Tk = k.shape[2]
        self.scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))
        mask = None if self.mask is None else expand_mask(self.mask, q.shape, k.shape)
        self.score_mask = None if mask is None else mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        self.future = future_keys(np, Tq, Tk) if self.is_causal else None
        self.masked_rows = mask is not None or self.is_causal  # a row may have every key masked
        step = rows_per_block(np, B, H * Tq * Tk * q.dtype.itemsize)
        self.blocks = [slice(start, start + step) for start in range(0, B, step)]
        keep = self.dropout_draw(np, (B, H, Tq, Tk))
        self.save(q=q, k=k, v=v, **self.kept_for_backward(q.dtype, (B, H, Tq, Tk)), keep=keep)
        out = np.empty((B, H, Tq, v.shape[3]), dtype=q.dtype)
        for b in self.blocks:
            np.matmul(self.block_dropped(self.first_probabilities(b), b), v[b], out=out[b])  # P' V
        return out

    def backward(self, g):
        q, k, v = self.q, self.k, self.v
        grad_q, grad_k, grad_v = (np.empty(a.shape, dtype=g.dtype) for a in (q, k, v))
        for b in self.blocks:
            p = self.probabilities(b)
            np.matmul(self.block_dropped(p, b).swapaxes(-1, -2), g[b], out=grad_v[b])
            ds = g[b] @ v[b].swapaxes(-1, -2)  # dP'
            if self.keep is not None:
                apply_mask(ds, self.keep[b], keep_scale(self.dropout_p), out=ds)  # dP
            softmax_backward_rows(p, ds, out=ds)  # dS
            ds *= self.scale
            np.matmul(ds, k[b], out=grad_q[b])
            np.matmul(ds.swapaxes(-1, -2), q[b], out=grad_k[b])
        return grad_q, grad_k, grad_v

    def kept_for_backward(self, dtype, shape) -> dict:
        """The buffers the forward fills for the backward, by name: P."""
        return {"probs": np.empty(shape, dtype=dtype)}

    def first_probabilities(self, b):
        """P of the batch slice ``b`` in the forward, written into the kept P."""
        p = self.block_scores(b, out=self.probs[b])
        return softmax_rows(p, out=p, masked_rows=self.masked_rows)  # an all-masked row stays all zero

    def probabilities(self, b):
        """P of the batch slice ``b`` in the backward."""
        return self.probs[b]

    def block_scores(self, b, out=None):
        """S = s Q K^T of the batch slice ``b`` with the masks written in as -inf (or the
        float mask added), into ``out`` or a new array."""
        p = np.matmul(self.q[b], self.k[b].swapaxes(-1, -2), out=out)
        p *= self.scale
        mask = self.score_mask
        if mask is not None:
            block_mask = mask[b] if mask.shape[0] > 1 else mask
            if block_mask.dtype == bool:
                np.copyto(p, -np.inf, where=~block_mask)
            else:
                p += block_mask.astype(p.dtype, copy=False)
        if self.future is not None:
            np.copyto(p, -np.inf, where=self.future)
        return p

    def block_dropped(self, p, b):
        """P' = dropout(P) of the batch slice ``b`` (a new array), or P itself."""
        return p if self.keep is None else apply_mask(p, self.keep[b], keep_scale(self.dropout_p))


@kernels.register(ScaledDotProductAttention, device="cpu")
class RecomputedAttention(BlockedAttention):
    def suits(self, q, k, v):
        B, H, Tq, _ = q.shape
        return recomputes(B * H * Tq * k.shape[2] * q.dtype.itemsize)

    def kept_for_backward(self, dtype, shape) -> dict:
        return {"lse": np.empty(shape[:3] + (1,), dtype=dtype)}

    def first_probabilities(self, b):
        p = self.block_scores(b)
        _, shift, total = exp_rows(p, out=p, masked_rows=self.masked_rows)
        self.lse[b] = np.where(total > 0, shift + np.log(np.maximum(total, total.dtype.type(1e-38))), np.inf)
        total[total == 0] = 1
        p /= total
        return p

    def probabilities(self, b):
        """P = exp(S - lse), exactly 0 where S is -inf (all-masked rows too: lse = inf)."""
        p = self.block_scores(b)
        p -= self.lse[b]
        return np.exp(p, out=p)


kernels.register(ScaledDotProductAttention, device="cpu")(BlockedAttention)


@kernels.register(PackedSelfAttention, device="cpu")
class RecomputedPackedSelfAttention(PackedSelfAttention, RecomputedAttention):
    def suits(self, qkv):  # asked of the PackedSelfAttention node before it becomes this class: no super()
        return RecomputedAttention.suits(self, *self.split_heads(qkv))


@kernels.register(PackedSelfAttention, device="cpu")
class BlockedPackedSelfAttention(PackedSelfAttention, BlockedAttention):
    pass


@kernels.register(RaggedSelfAttention, device="cpu")
class RecomputedRaggedSelfAttention(RaggedSelfAttention):
    sequence_op = RecomputedAttention

    def suits(self, qkv):
        scores = sum((stop - start) ** 2 for _, (start, stop) in self.spans())  # every sequence's L^2
        return recomputes(scores * self.n_heads * qkv.dtype.itemsize)


@kernels.register(RaggedSelfAttention, device="cpu")
class BlockedRaggedSelfAttention(RaggedSelfAttention):
    sequence_op = BlockedAttention
