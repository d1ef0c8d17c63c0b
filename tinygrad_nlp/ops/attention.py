"""Scaled dot-product attention with a padding mask, a causal mask and dropout on the
probabilities. Guide: docs/backward.md#scaled-dot-product-attention
"""
from __future__ import annotations

import functools
import math

from ..backend import get_array_module, keep_mask
from ..errors import ShapeError
from ..tensor import Function, Tensor, array_of
from .checks import broadcast_shape, check_probability
from .dropout import keep_scale
from .softmax import softmax_of


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
    """out = P' V with S = Q K^T / sqrt(Dh) + masking, P = softmax(S) over the keys and
    P' = dropout(P).

    Backward (g = dL/dout, s = 1/sqrt(Dh), m the dropout mask):
        dV = P'^T g;  dP' = g V^T;  dP = dP' * m / (1 - p)  (dropout's backward);
        dS = P * (dP - sum_k(dP * P))  (softmax's backward, row-wise);
        dQ = s dS K;  dK = s dS^T Q.
    A masked key has S = -inf, so P = 0 and dS = 0 there: it passes no gradient to Q or
    K. The causal triangle (``is_causal``) is such a mask, so it adds no term to the
    backward. A query row whose keys are *all* masked attends to nothing: its P row is
    all zeros (not 0/0), so its output is 0 and every gradient through it is 0.

    Saves: q, k, v, P (``probs``, B H Tq Tk numbers) and the boolean dropout mask m
    (``keep``), never S; P' is made again from P and m. The CPU paths
    (kernels/cpu/attention.py) save the same but fill them a cache-sized block of the
    batch at a time; at long sequences they save each row's log-sum-exp (``lse``)
    instead of P and make P = exp(S - lse) again in the backward. The CUDA path with the
    dropout kernel (kernels/cuda/attention.py) keeps the Philox key and counter instead
    of m and draws m again in the backward.
    """

    floating = True

    def __init__(self, mask=None, dropout_p=0.0, training=True, is_causal=False, keep=None):
        self.mask, self.is_causal = mask, bool(is_causal)
        self.dropout_p = check_probability(dropout_p, "scaled_dot_product_attention dropout")
        self.training = training
        self.given_keep = keep  # a mask drawn by the caller (a ragged sequence's share of its batch's draw)

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
        self.scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))      # s
        s = self.scores(xp, q, k)                                  # S (B, H, Tq, Tk), -inf where masked
        p = softmax_of(s)                                          # P (B, H, Tq, Tk); an all-masked row: 0
        keep = self.dropout_draw(xp, p.shape)                      # m (B, H, Tq, Tk) bool, None: no dropout
        self.save(q=q, k=k, v=v, probs=p, keep=keep)
        return self.dropped(p) @ v                                 # P' V (B, H, Tq, Dv)

    def backward(self, g):
        p = self.probs                                             # P (B, H, Tq, Tk)
        grad_v = self.dropped(p).swapaxes(-1, -2) @ g              # dV = P'^T g (B, H, Tk, Dv)
        grad_dropped = g @ self.v.swapaxes(-1, -2)                 # dP' = g V^T (B, H, Tq, Tk)
        grad_p = self.dropped(grad_dropped)                        # dP = dP' m / (1 - p)
        grad_s = p * (grad_p - (grad_p * p).sum(axis=-1, keepdims=True))  # dS = P (dP - sum_k dP P)
        grad_q = self.scale * (grad_s @ self.k)                    # dQ = s dS K (B, H, Tq, Dh)
        grad_k = self.scale * (grad_s.swapaxes(-1, -2) @ self.q)   # dK = s dS^T Q (B, H, Tk, Dh)
        return grad_q, grad_k, grad_v

    def scores(self, xp, q, k):
        """S = s Q K^T (B, H, Tq, Tk) with the masks written in: -inf where a boolean mask
        is False or the causal triangle hides a key, a float mask added."""
        s = q @ k.swapaxes(-1, -2) * self.scale                    # (B, H, Tq, Tk)
        hidden = s.dtype.type(-math.inf)
        mask = None if self.mask is None else expand_mask(self.mask, q.shape, k.shape)
        if mask is not None and mask.dtype == bool:
            s = xp.where(mask, s, hidden)
        elif mask is not None:
            s = s + mask.astype(s.dtype, copy=False)
        if self.is_causal:
            s = xp.where(future_keys(xp, q.shape[2], k.shape[2]), hidden, s)
        return s

    def dropout_draw(self, xp, shape):
        """m: the mask the caller gave, else the run's next draw for these examples
        (``keep_mask``); None without dropout."""
        if not (self.training and self.dropout_p > 0):
            return None
        return self.given_keep if self.given_keep is not None else keep_mask(xp, shape, self.dropout_p)

    def dropped(self, x):
        """x * m / (1 - p): P' from P in the forward, dP from dP' in the backward (x itself
        without dropout)."""
        return x if self.keep is None else x * self.keep * keep_scale(self.dropout_p)


class PackedSelfAttention(ScaledDotProductAttention):
    """Multi-head self-attention read from the fused QKV projection.

    Input (B, T, 3 * D) with D = H * Dh, laid out as (B, T, [q|k|v], H, Dh) (PyTorch's
    ``in_proj`` order); output (B, T, D), the heads side by side. The same function as
    splitting the input into q, k, v of shape (B, H, T, Dh), ``scaled_dot_product_attention``
    and merging the heads, whose forward and backward this reuses: the input gradient is
    the three head gradients written into one (B, T, 3, H, Dh) array. Splitting with three
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
        out = super().forward(*self.split_heads(qkv))             # (B, H, T, Dh)
        return out.transpose(0, 2, 1, 3).reshape(B, T, width // 3)  # (B, T, D), heads side by side

    def backward(self, g):
        xp = get_array_module(g)
        B, T, D = g.shape
        heads_grad = g.reshape(B, T, self.n_heads, D // self.n_heads).transpose(0, 2, 1, 3)  # (B, H, T, Dh)
        grad = xp.empty((B, T, 3, self.n_heads, D // self.n_heads), dtype=g.dtype)  # (B, T, [q|k|v], H, Dh)
        for i, gi in enumerate(super().backward(heads_grad)):     # dq, dk, dv (B, H, T, Dh)
            grad[:, :, i] = gi.transpose(0, 2, 1, 3)               # (B, T, H, Dh)
        return grad.reshape(B, T, 3 * D)


class RaggedSelfAttention(Function):
    """Multi-head self-attention over sequences of different lengths stored one after
    another as rows, none padded: input (N, 3 * D), the rows of sequence s being
    ``lengths[s]`` consecutive rows, each laid out as PackedSelfAttention's
    ([q|k|v], H, Dh); output (N, D). Each sequence attends within itself only, so a
    padded batch's attention costs the sum of L^2 over its sequences instead of B T^2,
    and needs no padding mask (the idea of flash-attention's variable-length form).

    Per sequence it is the op ``scaled_dot_product_attention`` on that sequence's q, k,
    v (views of the input rows): a ``sequence_op`` node called as every op is (its
    ``check``, the dispatch), whose backward this node's backward runs; the gradient is
    the three head gradients written into one (N, 3, H, Dh) array. ``key_mask`` (N,),
    True where a row may be attended to, hides rows as keys that are there only as
    queries (a row whose keys are all hidden outputs zeros); ``is_causal`` orders each
    sequence's rows as positions.

    Dropout draws one mask for the whole batch, as if it were the padded (B, H, T, T)
    grid, and gives each sequence the entries of its rows' ``positions`` (default 0, 1,
    ... in each sequence, T the longest): so with a packed batch's positions a
    sequence's mask depends on its example alone, not on which rows were packed.

    Saves: each sequence's P and dropout mask, as ``probs[s]`` and ``keep[s]``. The CPU
    paths (kernels/cpu/attention.py) decide once, by the bytes of every sequence's P
    together, whether each sequence keeps P or its log-sum-exp (``lse[s]``): their
    ``sequence_op`` is a faster class itself, which the dispatch leaves as it is.
    """

    floating = True
    sequence_op = ScaledDotProductAttention  # the attention each sequence runs

    def __init__(self, n_heads, lengths, key_mask=None, dropout_p=0.0, training=True, is_causal=False,
                 positions=None, seq_len=None):
        self.n_heads, self.lengths, self.key_mask = int(n_heads), lengths, key_mask
        self.positions, self.seq_len = positions, seq_len
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
        positions, T = self.positions, self.seq_len
        if positions is not None and (tuple(positions.shape) != (qkv.shape[0],) or T is None
                                      or (positions.size and not 0 <= int(positions.min()) <= int(positions.max()) < T)):
            raise ShapeError(f"ragged_self_attention: positions {tuple(positions.shape)} must give each of the "
                             f"{qkv.shape[0]} rows its place in 0..seq_len-1 (seq_len={T})")

    def forward(self, qkv):
        xp = get_array_module(qkv)
        N, width = qkv.shape
        heads = qkv.reshape(N, 3, self.n_heads, width // (3 * self.n_heads))  # (N, [q|k|v], H, Dh)
        out = xp.empty((N, self.n_heads, heads.shape[-1]), dtype=qkv.dtype)  # (N, H, Dh)
        wants_grad = any(self.needs_input_grad)
        keep = self.dropout_grid(xp)                               # (S, H, T, T) bool, None: no dropout
        self.segments = []
        for sequence, (start, stop) in self.spans():
            q, k, v = (Tensor(a, requires_grad=wants_grad) for a in heads[start:stop].transpose(1, 2, 0, 3)[:, None])
            at = self.positions_of(xp, start, stop)
            attention = self.sequence_attention(start, stop, None if keep is None else keep[sequence][:, at[:, None], at][None])
            out[start:stop] = attention(q, k, v).data[0].transpose(1, 0, 2)  # (L, H, Dh)
            if wants_grad:
                self.segments.append((start, stop, attention))
        return out.reshape(N, width // 3)

    def backward(self, g):
        xp = get_array_module(g)
        N, D = g.shape
        heads_grad = g.reshape(N, self.n_heads, D // self.n_heads)  # (N, H, Dh)
        grad = xp.empty((N, 3, self.n_heads, D // self.n_heads), dtype=g.dtype)  # (N, [q|k|v], H, Dh)
        for start, stop, attention in self.segments:
            for i, gi in enumerate(attention.backward(heads_grad[start:stop].transpose(1, 0, 2)[None])):
                grad[start:stop, i] = gi[0].transpose(1, 0, 2)       # (L, H, Dh)
        return grad.reshape(N, 3 * D)

    def spans(self):
        """(sequence, (start, stop)) of each non-empty sequence's rows."""
        ends = [int(e) for e in self.lengths.cumsum()]
        return [(s, (start, stop)) for s, (start, stop) in enumerate(zip([0] + ends[:-1], ends)) if stop > start]

    def positions_of(self, xp, start, stop):
        """The positions of the rows start:stop in their sequence (default 0 .. L-1)."""
        return xp.arange(stop - start) if self.positions is None else self.positions[start:stop]

    def dropout_grid(self, xp):
        """The batch's dropout mask as the padded (S, H, T, T) grid (``keep_mask``, one
        draw for every sequence), or None without dropout."""
        if not (self.training and self.dropout_p > 0):
            return None
        T = self.seq_len if self.positions is not None else int(self.lengths.max(initial=0))
        return keep_mask(xp, (len(self.lengths), self.n_heads, T, T), self.dropout_p)

    def sequence_attention(self, start, stop, keep=None):
        """The attention node of the sequence in rows start:stop, its keys masked by
        ``key_mask`` as a (1, L) key-padding mask (none when every row is a key), ``keep``
        its dropout mask (1, H, L, L)."""
        keys = None if self.key_mask is None else self.key_mask[start:stop]
        mask = None if keys is None or bool(keys.all()) else keys[None]
        return self.sequence_op(mask, self.dropout_p, self.training, self.is_causal, keep)

    def saved_arrays(self) -> dict:
        """Each sequence's P (or log-sum-exp) and dropout mask, as ``probs[s]`` and so on;
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


def ragged_self_attention(qkv, lengths, n_heads, key_mask=None, dropout_p=0.0, training=True, is_causal=False,
                          positions=None, seq_len=None):
    """Multi-head self-attention over sequences stored one after another without padding:
    ``qkv`` (N, 3 * D) holds ``lengths[0]`` rows of the first sequence, then the second's,
    and so on, each row laid out as ``self_attention``'s; out (N, D). Each sequence attends
    within itself only: the rows of a padded (B, T) batch's real tokens, with ``lengths``
    the real tokens per row, give ``self_attention``'s output at those rows, without the
    padding's work. ``key_mask`` (N,): True where a row may be attended to (default: every
    row); ``is_causal``: a row may not attend to a later row of its sequence.
    ``positions`` (N,) and ``seq_len``: each row's position in its (B, T) batch row and T,
    for a packed batch, so that a sequence's dropout mask is the one of its positions."""
    xp = get_array_module(array_of(qkv))
    lengths = xp.asarray(array_of(lengths))
    return RaggedSelfAttention(n_heads, lengths, None if key_mask is None else xp.asarray(array_of(key_mask)),
                               dropout_p, training, is_causal, None if positions is None else xp.asarray(positions),
                               seq_len)(qkv)
