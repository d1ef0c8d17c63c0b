"""Grouped-query attention: fewer key/value heads than query heads (Llama 2 70B, Llama 3,
Mistral). Guide: docs/backward.md#grouped-query-attention
"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import array_of
from .attention import ScaledDotProductAttention, expand_mask


def repeat_heads(x, group):
    """x (B, Hkv, T, D) with each head repeated ``group`` times in place: (B, Hkv * group, T, D),
    head j at j*group .. j*group + group - 1 (transformers' ``repeat_kv``, PyTorch's
    ``repeat_interleave`` along the head axis)."""
    return get_array_module(x).repeat(x, group, axis=1)


def sum_groups(grad, group):
    """The transpose of ``repeat_heads``: (B, Hkv * group, T, D) summed over each group of
    ``group`` consecutive heads, (B, Hkv, T, D)."""
    B, H, T, D = grad.shape
    return grad.reshape(B, H // group, group, T, D).sum(axis=2)


class GroupedQueryAttention(ScaledDotProductAttention):
    """Attention with q (B, H, Tq, Dh) and k, v (B, Hkv, Tk, Dh), H a multiple of Hkv:
    key/value head j serves the G = H / Hkv query heads j*G .. j*G + G - 1.

    It is ``scaled_dot_product_attention`` on k and v with each head repeated G times
    (K' = repeat(K), V' = repeat(V)), so the masks, ``is_causal`` (also with Tq < Tk, a
    cached decoding step) and dropout are the base class's. Backward: the base class's
    gives dL/dK' and dL/dV' per query head; each key/value head fed its G copies, so its
    gradient is the sum over its group (the transpose of a repeat is a sum):
        dK_j = sum_{r < G} dK'_{jG + r},  dV_j = sum_{r < G} dV'_{jG + r};  dQ as before.

    Saves: what the base class saves, with k and v repeated (G times their own size).
    """

    def check(self, q, k, v):
        get_array_module(q, k, v, self.mask)
        shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        if not (q.ndim == k.ndim == v.ndim == 4) or q.shape[0] != k.shape[0] or k.shape[:3] != v.shape[:3] \
                or q.shape[3] != k.shape[3]:
            raise ShapeError(f"grouped_query_attention: {shapes} must be (B, H, Tq, Dh), (B, Hkv, Tk, Dh), "
                             "(B, Hkv, Tk, Dv)")
        H, Hkv = q.shape[1], k.shape[1]
        if Hkv == 0 or H % Hkv:
            raise ShapeError(f"grouped_query_attention: {shapes}: the H={H} query heads must be a multiple of "
                             f"the Hkv={Hkv} key/value heads")
        if k.shape[2] == 0:
            raise ShapeError(f"grouped_query_attention: k {tuple(k.shape)} has no keys to attend to")
        if self.mask is not None:
            expand_mask(self.mask, q.shape, k.shape)               # the mask against (B, H, Tq, Tk)

    def forward(self, q, k, v):
        self.group = q.shape[1] // k.shape[1]                      # G, a number the backward needs (no array)
        return super().forward(q, repeat_heads(k, self.group), repeat_heads(v, self.group))

    def backward(self, g):
        grad_q, grad_k, grad_v = super().backward(g)               # dK', dV' (B, H, Tk, Dh): one per query head
        return grad_q, sum_groups(grad_k, self.group), sum_groups(grad_v, self.group)


def grouped_query_attention(q, k, v, mask=None, dropout_p=0.0, is_causal=False, training=True):
    """``scaled_dot_product_attention`` for q (B, H, Tq, Dh) and k, v (B, Hkv, Tk, Dh) with
    H a multiple of Hkv, key/value head j shared by query heads j*G .. j*G + G - 1
    (G = H / Hkv), as PyTorch's ``scaled_dot_product_attention(..., enable_gqa=True)`` and
    transformers' ``repeat_kv``. ``mask``, ``dropout_p``, ``is_causal`` and ``training``
    as there; with Hkv = H it is that function."""
    return GroupedQueryAttention(array_of(mask), dropout_p, training, is_causal)(q, k, v)
