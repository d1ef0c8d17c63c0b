"""Scaled dot-product attention with a padding mask, a causal mask and dropout on the
probabilities. Guide: docs/backward.md#scaled-dot-product-attention
"""
from __future__ import annotations

import functools
import math

from ..backend import get_array_module, rows_per_block
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import broadcast_shape, check_probability
from .dropout import keep_scale
from ..backend import keep_mask


class _KeptMaskShim:  # TEMPORARY until attention is rewritten
    def __init__(self, like, p, shape):
        self.keep = keep_mask(get_array_module(like), shape, p)
        self.scale, self.shape, self.dtype, self.nbytes = keep_scale(p), self.keep.shape, self.keep.dtype, self.keep.nbytes

    def apply(self, x, rows=None, out=None):
        y = get_array_module(x).multiply(x, x.dtype.type(self.scale), out=out)
        y *= self.keep if rows is None else self.keep[rows]
        return y


draw_dropout_mask = _KeptMaskShim
from .softmax import exp_rows, softmax_backward, softmax_rows

# Above this many bytes of probabilities (B H Tq Tk) an attention call keeps each row's
# log-sum-exp instead and makes P again, a batch block at a time, in the backward: one more
# Q K^T product for the memory of the whole P (the flash-attention idea, in NumPy).
KEEP_PROBABILITIES_UP_TO = 32 << 20


def recomputes(probability_bytes: int) -> bool:
    """Whether P of this many bytes is made again in the backward instead of kept."""
    return probability_bytes > KEEP_PROBABILITIES_UP_TO


def expand_mask(mask, q_shape, k_shape):
    """A mask as an array broadcastable to (B, H, Tq, Tk).

    A 2-D boolean ``(B, Tk)`` mask is a key-padding mask (True = may be attended to) and
    becomes ``(B, 1, 1, Tk)``, so every head and every query of example b sees example
    b's own padding. Anything else must already broadcast to (B, H, Tq, Tk).
    """
    B, H, Tq, _ = q_shape
    Tk = k_shape[2]
    if mask.ndim == 2 and mask.dtype == bool and tuple(mask.shape) == (B, Tk):
        return mask.reshape(B, 1, 1, Tk)
    if mask.ndim <= 4:
        try:
            if broadcast_shape("attention", mask.shape, (B, H, Tq, Tk)) == (B, H, Tq, Tk):
                return mask
        except ShapeError:
            pass
    raise ShapeError(
        f"scaled_dot_product_attention: mask of shape {tuple(mask.shape)} fits neither a key-padding mask "
        f"({B}, {Tk}) nor the scores ({B}, {H}, {Tq}, {Tk})"
    )


@functools.lru_cache(maxsize=64)
def future_keys(xp, Tq: int, Tk: int):
    """The causal triangle as a (Tq, Tk) boolean array, True where query i may not look:
    key j > i + (Tk - Tq). The queries are the last Tq positions of the Tk keys, so with
    Tq < Tk (a decoding step after cached keys) every query sees every earlier key. One
    small array per shape, shared by every call, broadcast over batch and heads."""
    return xp.arange(Tk)[None, :] > xp.arange(Tq)[:, None] + (Tk - Tq)


class ScaledDotProductAttention(Function):
    """out = P' V with P = softmax(Q K^T / sqrt(Dh) + masking), P' = dropout(P).

    Backward (g = dL/dout, s = 1/sqrt(Dh)):
        dV = P'^T g;  dP' = g V^T;  dP = dP' * m / (1 - p)  (the dropout mask);
        dS = P * (dP - sum_k(dP * P))  (softmax's backward, row-wise);
        dQ = s dS K;  dK = s dS^T Q.
    Masked keys have P = 0, so their dS is 0 and they pass no gradient to Q or K; the
    causal triangle (``is_causal``) is such a mask, so it adds no term to the backward.
    A query row whose keys are *all* masked attends to nothing: its P row is all zeros,
    so its output is 0 and every gradient through it is 0 (finite, never NaN).
    The forward saves P (and the dropout draw, ops/dropout.py), never the raw scores,
    and P' is recomputed from them; above ``KEEP_PROBABILITIES_UP_TO`` bytes of P (long
    sequences) it saves each row's log-sum-exp instead, and the backward makes P again,
    P = exp(S - lse), one batch block at a time. Both passes go through the batch in blocks whose
    scores fit in the cache. With the fused dropout kernel on the GPU (ops/dropout.cu)
    the draw keeps no mask: each block's is drawn again from its Philox stream.
    """

    floating = True

    def __init__(self, mask=None, dropout_p=0.0, training=True, is_causal=False, *, recompute=None):
        self.mask, self.is_causal = mask, bool(is_causal)
        self.dropout_p = check_probability(dropout_p, "scaled_dot_product_attention dropout")
        self.training = training
        self.forced_recompute = recompute  # None: decided by the size of P

    def check(self, q, k, v):
        get_array_module(q, k, v, self.mask)
        if not (q.ndim == k.ndim == v.ndim == 4) or q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] \
                or q.shape[3] != k.shape[3]:
            raise ShapeError(
                f"scaled_dot_product_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} must be "
                "(B, H, Tq, Dh), (B, H, Tk, Dh), (B, H, Tk, Dv)"
            )
        if k.shape[2] == 0:
            raise ShapeError(f"scaled_dot_product_attention: k {tuple(k.shape)} has no keys to attend to")
        if self.mask is not None:
            expand_mask(self.mask, q.shape, k.shape)

    def forward(self, q, k, v):
        xp = get_array_module(q, k, v)
        B, H, Tq, _ = q.shape
        Tk = k.shape[2]
        self.scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
        mask = None if self.mask is None else expand_mask(self.mask, q.shape, k.shape)
        self.score_mask = None if mask is None else mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        self.future = future_keys(xp, Tq, Tk) if self.is_causal else None
        self.shape, self.itemsize = (B, H, Tq, Tk), q.dtype.itemsize
        self.recompute = (recomputes(B * H * Tq * Tk * q.dtype.itemsize) if self.forced_recompute is None
                          else bool(self.forced_recompute))
        keep = None
        if self.training and self.dropout_p > 0:
            keep = draw_dropout_mask(q, self.dropout_p, (B, H, Tq, Tk))
        probs, lse = None, None
        if self.recompute:  # long sequences: keep each row's log-sum-exp; P is made again backward
            lse = xp.empty((B, H, Tq, 1), dtype=q.dtype)
        else:
            probs = xp.empty((B, H, Tq, Tk), dtype=q.dtype)
        self.save(q=q, k=k, v=v, probs=probs, lse=lse, keep=keep)
        out = xp.empty((B, H, Tq, v.shape[3]), dtype=q.dtype)
        masked_rows = self.score_mask is not None or self.future is not None
        for b in self.batch_blocks(xp):
            p = self.scores(xp, b, out=None if self.recompute else probs[b])
            if self.recompute:
                _, shift, total = exp_rows(p, out=p, masked_rows=masked_rows)
                lse[b] = xp.where(total > 0, shift + xp.log(xp.maximum(total, total.dtype.type(1e-38))), xp.inf)
                total[total == 0] = 1
                p /= total
            else:
                softmax_rows(p, out=p, masked_rows=masked_rows)  # P; all-masked rows stay all-zero
            xp.matmul(self.dropped(p, b), v[b], out=out[b])  # out = P' V
        return out

    def scores(self, xp, b, out=None):
        """S = s Q K^T of the batch slice ``b`` with the masks written in as -inf (or the
        float mask added), into ``out`` or a new array."""
        q, k = self.q[b], self.k[b]
        p = xp.matmul(q, k.swapaxes(-1, -2), out=out)
        p *= self.scale
        mask = self.score_mask
        if mask is not None:
            block_mask = mask[b] if mask.shape[0] > 1 else mask
            if block_mask.dtype == bool:
                xp.copyto(p, -xp.inf, where=~block_mask)
            else:
                p += block_mask.astype(q.dtype, copy=False)
        if self.future is not None:
            xp.copyto(p, -xp.inf, where=self.future)
        return p

    def probabilities(self, xp, b):
        """P of the batch slice ``b``: saved, or made again from Q, K and each row's
        log-sum-exp, P = exp(S - lse) (exactly 0 where S is -inf, all-masked rows too)."""
        if not self.recompute:
            return self.probs[b]
        p = self.scores(xp, b)
        p -= self.lse[b]
        return xp.exp(p, out=p)

    def batch_blocks(self, xp):
        """Slices of the batch axis whose (H, Tq, Tk) score blocks fit the cache: every
        elementwise pass over the scores then runs there (one block on the GPU)."""
        B, H, Tq, Tk = self.shape
        step = rows_per_block(xp, B, H * Tq * Tk * self.itemsize)
        return [slice(start, start + step) for start in range(0, B, step)]

    def dropped(self, probs, b):
        """P' = dropout(P) for the batch slice ``b`` (a new array), or P itself."""
        return probs if self.keep is None else self.keep.apply(probs, b)

    def backward(self, g):
        xp = get_array_module(g)
        q, k, v = self.q, self.k, self.v
        grad_q, grad_k, grad_v = (xp.empty(a.shape, dtype=g.dtype) for a in (q, k, v))
        for b in self.batch_blocks(xp):
            p = self.probabilities(xp, b)
            xp.matmul(self.dropped(p, b).swapaxes(-1, -2), g[b], out=grad_v[b])
            ds = g[b] @ v[b].swapaxes(-1, -2)  # dL/dP'
            if self.keep is not None:
                self.keep.apply(ds, b, out=ds)
            softmax_backward(p, ds, out=ds)  # dS
            ds *= self.scale
            xp.matmul(ds, k[b], out=grad_q[b])
            xp.matmul(ds.swapaxes(-1, -2), q[b], out=grad_k[b])
        return grad_q, grad_k, grad_v


class PackedSelfAttention(ScaledDotProductAttention):
    """Multi-head self-attention read from the fused QKV projection.

    Input (B, T, 3 * D) with D = H * Dh, laid out as (B, T, [q|k|v], H, Dh) (PyTorch's
    ``in_proj`` order); output (B, T, D), the heads side by side. The same function as
    splitting the input into q, k, v of shape (B, H, T, Dh), ``scaled_dot_product_attention``
    and merging the heads, whose backward this reuses: the input gradient is the three
    head gradients written into one (B, T, 3, H, Dh) buffer. Splitting with three
    ``getitem`` ops instead would give each a zero-filled (B, T, 3 * D) gradient to add
    up, four times the memory traffic.
    """

    def __init__(self, n_heads, mask=None, dropout_p=0.0, training=True, is_causal=False):
        super().__init__(mask, dropout_p, training, is_causal)
        self.n_heads = int(n_heads)

    def split_heads(self, qkv):
        """q, k, v (B, H, T, Dh) as views of the (B, T, 3 * D) input."""
        B, T, width = qkv.shape
        return qkv.reshape(B, T, 3, self.n_heads, width // (3 * self.n_heads)).transpose(2, 0, 3, 1, 4)

    def check(self, qkv):
        H = self.n_heads
        if qkv.ndim != 3 or H < 1 or qkv.shape[-1] % (3 * H):
            raise ShapeError(
                f"self_attention: input {tuple(qkv.shape)} must be (B, T, 3 * n_heads * head_dim) "
                f"with n_heads={H}"
            )
        super().check(*self.split_heads(qkv))

    def forward(self, qkv):
        B, T, width = qkv.shape
        out = super().forward(*self.split_heads(qkv))  # (B, H, T, Dh)
        return out.transpose(0, 2, 1, 3).reshape(B, T, width // 3)

    def backward(self, g):
        xp = get_array_module(g)
        B, T, D = g.shape
        H = self.n_heads
        heads_grad = g.reshape(B, T, H, D // H).transpose(0, 2, 1, 3)
        grad = xp.empty((B, T, 3, H, D // H), dtype=g.dtype)
        for i, gi in enumerate(super().backward(heads_grad)):
            grad[:, :, i] = gi.transpose(0, 2, 1, 3)
        return grad.reshape(B, T, 3 * D)


class RaggedSelfAttention(Function):
    """Multi-head self-attention over sequences of different lengths stored one after
    another as rows, none padded: input (N, 3 * D), the rows of sequence s being
    ``lengths[s]`` consecutive rows, each laid out as PackedSelfAttention's
    ([q|k|v], H, Dh); output (N, D). Each sequence attends within itself only, so a
    padded batch's attention costs the sum of L^2 over its sequences instead of B T^2,
    and needs no padding mask (the idea of flash-attention's variable-length form).

    Per sequence it is ``scaled_dot_product_attention`` of that sequence's q, k, v (as
    views of the input rows), with its forward and backward: the gradient is the three
    head gradients written into one (N, 3, H, Dh) buffer. ``key_mask`` (N,), True where
    a row may be attended to, hides rows as keys that are there only as queries (a row
    whose keys are all hidden outputs zeros); ``is_causal`` orders each sequence's rows
    as positions. Whether P is kept or made again in the backward is decided once, by
    the bytes of every sequence's P together.
    """

    floating = True

    def __init__(self, n_heads, lengths, key_mask=None, dropout_p=0.0, training=True, is_causal=False):
        self.n_heads, self.lengths, self.key_mask = int(n_heads), lengths, key_mask
        self.dropout_p = check_probability(dropout_p, "ragged_self_attention dropout")
        self.training, self.is_causal = training, bool(is_causal)

    def check(self, qkv):
        H, lengths, key_mask = self.n_heads, self.lengths, self.key_mask
        if qkv.ndim != 2 or H < 1 or qkv.shape[-1] % (3 * H):
            raise ShapeError(f"ragged_self_attention: input {tuple(qkv.shape)} must be (rows, 3 * n_heads * head_dim) "
                             f"with n_heads={H}")
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths.size and int(lengths.min()) < 0) \
                or int(lengths.sum()) != qkv.shape[0]:
            raise ShapeError(f"ragged_self_attention: lengths {lengths.tolist() if lengths.size <= 8 else lengths.shape} "
                             f"must be non-negative integers summing to the input's {qkv.shape[0]} rows")
        if key_mask is not None and (key_mask.dtype != bool or tuple(key_mask.shape) != (qkv.shape[0],)):
            raise ShapeError(f"ragged_self_attention: key_mask {key_mask.dtype} {tuple(key_mask.shape)} must be "
                             f"boolean with one entry per input row ({qkv.shape[0]},)")

    def forward(self, qkv):
        xp = get_array_module(qkv)
        N, width = qkv.shape
        H = self.n_heads
        heads = qkv.reshape(N, 3, H, width // (3 * H))
        ends = [int(e) for e in self.lengths.cumsum()]
        spans = [(start, stop) for start, stop in zip([0] + ends[:-1], ends) if stop > start]
        recompute = recomputes(sum((stop - start) ** 2 for start, stop in spans) * H * qkv.dtype.itemsize)
        out = xp.empty((N, H, heads.shape[-1]), dtype=qkv.dtype)
        keys, self.segments = self.key_mask, []
        for start, stop in spans:
            q, k, v = heads[start:stop].transpose(1, 2, 0, 3)[:, None]  # each (1, H, L, Dh)
            mask = None if keys is None or bool(keys[start:stop].all()) else keys[start:stop][None]
            attention = ScaledDotProductAttention(mask, self.dropout_p, self.training, self.is_causal,
                                                  recompute=recompute)
            out[start:stop] = attention.forward(q, k, v)[0].transpose(1, 0, 2)
            if any(self.needs_input_grad):
                self.segments.append((start, stop, attention))
        return out.reshape(N, width // 3)

    def backward(self, g):
        xp = get_array_module(g)
        N, D = g.shape
        H = self.n_heads
        heads_grad = g.reshape(N, H, D // H)
        grad = xp.empty((N, 3, H, D // H), dtype=g.dtype)
        for start, stop, attention in self.segments:
            for i, gi in enumerate(attention.backward(heads_grad[start:stop].transpose(1, 0, 2)[None])):
                grad[start:stop, i] = gi[0].transpose(1, 0, 2)
        return grad.reshape(N, 3 * D)

    def saved_arrays(self) -> dict:
        """Each sequence's P (or log-sum-exp) and dropout draw, as ``probs[s]`` and so on;
        its q, k and v are views of the input."""
        return {f"{name}[{s}]": array for s, (_, _, attention) in enumerate(getattr(self, "segments", ()))
                for name, array in attention.saved_arrays().items() if name not in ("q", "k", "v")}

    def release(self) -> None:
        super().release()
        self.segments = []


# -- the public functions ------------------------------------------------------------
def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, is_causal=False, training=True):
    """softmax(q k^T / sqrt(Dh), masked) v for q (B, H, Tq, Dh), k and v (B, H, Tk, Dh).

    ``mask``: a boolean key-padding mask (B, Tk), True where a key may be attended to, or
    an array broadcastable to (B, H, Tq, Tk) (boolean: True = attend; float: added to
    the scores). ``is_causal``: query i may not attend to a later key; the queries are the
    last Tq of the Tk positions (with Tq = Tk PyTorch's triangle; with Tq < Tk a decoding
    step that sees every cached key), combined with ``mask`` when both are given. A query
    whose keys are all masked outputs zeros (and gets zero gradients). ``dropout_p`` drops
    attention probabilities when ``training``.
    """
    return ScaledDotProductAttention(array_of(mask), dropout_p, training, is_causal)(q, k, v)


def self_attention(qkv, n_heads, mask=None, dropout_p=0.0, training=True, is_causal=False):
    """Multi-head self-attention from a fused QKV projection ``qkv`` (B, T, 3 * D), laid
    out as (B, T, [q|k|v], n_heads, D / n_heads): the heads' outputs side by side,
    (B, T, D). Equal to splitting q, k, v into heads, ``scaled_dot_product_attention``
    with the same ``mask``, ``is_causal`` and dropout, and merging the heads; faster, and
    with one gradient buffer."""
    return PackedSelfAttention(n_heads, array_of(mask), dropout_p, training, is_causal)(qkv)


def ragged_self_attention(qkv, lengths, n_heads, key_mask=None, dropout_p=0.0, training=True, is_causal=False):
    """Multi-head self-attention over sequences stored one after another without padding:
    ``qkv`` (N, 3 * D) holds ``lengths[0]`` rows of the first sequence, then the second's,
    and so on, each row laid out as ``self_attention``'s; out (N, D). Each sequence attends
    within itself only: the rows of a padded (B, T) batch's real tokens, with ``lengths``
    the real tokens per row, give ``self_attention``'s output at those rows, without the
    padding's work. ``key_mask`` (N,): True where a row may be attended to (default: every
    row); ``is_causal``: a row may not attend to a later row of its sequence."""
    xp = get_array_module(array_of(qkv))
    lengths = xp.asarray(array_of(lengths))
    return RaggedSelfAttention(n_heads, lengths, None if key_mask is None else xp.asarray(array_of(key_mask)),
                               dropout_p, training, is_causal)(qkv)
