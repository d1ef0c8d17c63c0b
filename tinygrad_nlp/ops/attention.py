"""Scaled dot-product attention with a padding mask and dropout on the probabilities.
Guide: docs/backward.md#scaled-dot-product-attention
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function
from . import rowwise
from .dropout import check_p, keep_mask
from .elementwise import broadcast_shape


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


class ScaledDotProductAttention(Function):
    """out = P' V with P = softmax(Q K^T / sqrt(Dh) + masking), P' = dropout(P).

    Backward (g = dL/dout, s = 1/sqrt(Dh)):
        dV = P'^T g;  dP' = g V^T;  dP = dP' * m / (1 - p)  (the dropout mask);
        dS = P * (dP - sum_k(dP * P))  (softmax's backward, row-wise);
        dQ = s dS K;  dK = s dS^T Q.
    Masked keys have P = 0, so their dS is 0 and they pass no gradient to Q or K.
    A query row whose keys are *all* masked attends to nothing: its P row is all zeros,
    so its output is 0 and every gradient through it is 0 (finite, never NaN).
    The forward saves P (and the dropout mask), never the raw scores.
    """

    def __init__(self, mask=None, dropout_p=0.0, training=True):
        self.mask = mask
        self.dropout_p = check_p(dropout_p, "scaled_dot_product_attention dropout")
        self.training = training

    def forward(self, q, k, v):
        xp = get_array_module(q, k, v, self.mask)
        if not (q.ndim == k.ndim == v.ndim == 4) or q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] \
                or q.shape[3] != k.shape[3]:
            raise ShapeError(
                f"scaled_dot_product_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} must be "
                "(B, H, Tq, Dh), (B, H, Tk, Dh), (B, H, Tk, Dv)"
            )
        self.q, self.k, self.v = q, k, v
        self.scale = 1.0 / math.sqrt(q.shape[-1])
        scores = q @ k.swapaxes(-1, -2)
        scores *= q.dtype.type(self.scale)
        if self.mask is not None:
            mask = expand_mask(self.mask, q.shape, k.shape)
            if mask.dtype == bool:
                scores = xp.where(mask, scores, -xp.inf).astype(q.dtype, copy=False)
            else:
                scores = scores + mask.astype(q.dtype, copy=False)
        row_max = rowwise.row_max(scores)
        if self.mask is not None:
            row_max = xp.where(xp.isfinite(row_max), row_max, 0)
        scores -= row_max
        probs = xp.exp(scores, out=scores)
        denom = rowwise.row_sum(probs)
        if self.mask is not None:
            denom[denom == 0] = 1  # all-masked rows stay all-zero
        probs /= denom
        self.probs = probs
        self.keep = None
        if self.training and self.dropout_p > 0:
            self.keep = keep_mask(xp, probs.shape, self.dropout_p, probs.dtype)
            self.drop_scale = 0.0 if self.dropout_p == 1 else 1.0 / (1.0 - self.dropout_p)
            probs = probs * q.dtype.type(self.drop_scale)
            probs *= self.keep
        self.dropped = probs
        return probs @ v

    def backward(self, g):
        p, q, k, v = self.probs, self.q, self.k, self.v
        grad_v = self.dropped.swapaxes(-1, -2) @ g
        dp = g @ v.swapaxes(-1, -2)
        if self.keep is not None:
            dp *= self.keep
            dp *= dp.dtype.type(self.drop_scale)
        ds = dp
        ds -= rowwise.row_sum(dp * p)
        ds *= p
        ds *= ds.dtype.type(self.scale)
        grad_q = ds @ k
        grad_k = ds.swapaxes(-1, -2) @ q
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

    def __init__(self, n_heads, mask=None, dropout_p=0.0, training=True):
        super().__init__(mask, dropout_p, training)
        self.n_heads = int(n_heads)

    def forward(self, qkv):
        H = self.n_heads
        if qkv.ndim != 3 or H < 1 or qkv.shape[-1] % (3 * H):
            raise ShapeError(
                f"self_attention: input {tuple(qkv.shape)} must be (B, T, 3 * n_heads * head_dim) "
                f"with n_heads={H}"
            )
        B, T, width = qkv.shape
        q, k, v = qkv.reshape(B, T, 3, H, width // (3 * H)).transpose(2, 0, 3, 1, 4)
        out = super().forward(q, k, v)  # (B, H, T, Dh)
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
