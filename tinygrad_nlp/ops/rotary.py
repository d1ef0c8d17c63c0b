"""Rotary position embeddings (RoPE), in transformers' (Llama's) convention.
Guide: docs/backward.md#rotary-position-embeddings
"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ArgumentError, ShapeError
from ..tensor import Function, array_of


def rotate_half(x):
    """[-x2, x1] for x = [x1, x2] split in halves along the last axis (transformers' rotate_half)."""
    half = x.shape[-1] // 2
    return get_array_module(x).concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rotate_half_transposed(u):
    """[u2, -u1]: the transpose of rotate_half as a matrix, R^T = -R (a quarter turn back)."""
    half = u.shape[-1] // 2
    return get_array_module(u).concatenate([u[..., half:], -u[..., :half]], axis=-1)


class RotaryEmbedding(Function):
    """y = x * cos + rotate_half(x) * sin, for x (B, H, T, Dh), Dh even.

    Feature i and feature i + Dh/2 of position p form a pair rotated by the angle
    p * f_i, with f_i = theta^(-2i/Dh), i < Dh/2:
        y_i = x_i cos - x_(i+Dh/2) sin,  y_(i+Dh/2) = x_(i+Dh/2) cos + x_i sin.
    In transformers' terms: inv_freq = 1 / theta^(arange(0, Dh, 2) / Dh), freqs =
    positions[..., None] * inv_freq, emb = concat(freqs, freqs), cos = cos(emb), sin =
    sin(emb). The positions are absolute: a decoding step after a KV cache of length L
    passes L, L+1, ...; with (B, T) positions each example has its own.

    Backward: y is linear in x, y = C x + S R x with C, S the diagonal cos and sin and R
    the matrix of rotate_half, so dL/dx = C g + R^T S g:
        dL/dx = g * cos + rotate_half^T(g * sin),  rotate_half^T(u) = [u2, -u1],
    the same pairs rotated by minus the angle (a rotation's transpose is its inverse).
    The positions are integers: no gradient.

    Saves: cos and sin ((T, Dh), or (B, 1, T, Dh) with per-example positions), not x.
    cos and sin are computed in float64 and cast to x's dtype (transformers computes
    them in float32 and casts to the input's dtype; float64 keeps the angle exact to
    about 1e-16 relative at any position, where float32 would be off by up to 1e-7
    times the position).
    """

    floating = True

    def __init__(self, positions, theta=10000.0):
        self.positions, self.theta = positions, float(theta)
        if not self.theta > 0:
            raise ArgumentError(f"rotary_embedding: theta must be > 0, got {theta!r}")

    def check(self, x):
        get_array_module(x, self.positions)
        p = self.positions
        if x.ndim != 4 or x.shape[-1] % 2:
            raise ShapeError(f"rotary_embedding: input {tuple(x.shape)} must be (B, H, T, Dh) with Dh even")
        B, _, T, _ = x.shape
        if p.dtype.kind not in "iu" or tuple(p.shape) not in ((T,), (B, T)):
            raise ShapeError(f"rotary_embedding: positions {p.dtype} {tuple(p.shape)} must be integers of shape "
                             f"({T},) or ({B}, {T}) for input {tuple(x.shape)}")

    def forward(self, x):
        cos, sin = self.angles(x)                                  # (T, Dh) or (B, 1, T, Dh)
        self.save(cos=cos, sin=sin)
        return x * cos + rotate_half(x) * sin                      # (B, H, T, Dh)

    def backward(self, g):
        return g * self.cos + rotate_half_transposed(g * self.sin)  # the rotation by minus the angle

    def angles(self, x):
        """cos(emb) and sin(emb) in x's dtype, emb = concat(freqs, freqs), (T, Dh) or (B, 1, T, Dh)."""
        xp = get_array_module(x)
        Dh = x.shape[-1]
        inv_freq = 1 / self.theta ** (xp.arange(0, Dh, 2, dtype=xp.float64) / Dh)  # f_i (Dh/2,)
        freqs = self.positions.astype(xp.float64)[..., None] * inv_freq            # (..., T, Dh/2)
        emb = xp.concatenate([freqs, freqs], axis=-1)                               # (..., T, Dh)
        if emb.ndim == 3:
            emb = emb[:, None]                                     # (B, 1, T, Dh): every head alike
        return xp.cos(emb).astype(x.dtype), xp.sin(emb).astype(x.dtype)


def rotary_embedding(x, positions, theta=10000.0):
    """Rotate the query or key heads ``x`` (B, H, T, Dh), Dh even, by their positions, as
    transformers' ``apply_rotary_pos_emb`` with Llama's ``LlamaRotaryEmbedding`` (no
    scaling): pairs (i, i + Dh/2) turned by position * theta^(-2i/Dh). ``positions``: the
    absolute position of each of the T rows, (T,) or (B, T) integers (after a KV cache
    of length L, a step's positions start at L)."""
    xp = get_array_module(array_of(x))
    return RotaryEmbedding(xp.asarray(array_of(positions)), theta)(x)
