"""Decoder blocks (GPT-2's: pre-norm, causal self-attention, tanh GELU) and the KV cache
(GPT's and Llama's) that makes generating a token cost attention over the cached keys,
not the whole prefix.
Guide: docs/backward.md#the-kv-cache
"""
from __future__ import annotations

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Tensor
from .layers import Dropout, LayerNorm, Linear
from .module import Module


class KVCache:
    """Each layer's keys and values of the positions seen so far, in buffers of
    (batch, heads, max_len, head_dim) filled up to ``length`` (``heads``: the key/value
    heads, fewer than the query heads with grouped-query attention): a decoding step
    writes its new keys and values after the cached ones and attends over the filled part."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, head_dim: int, xp, dtype):
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = [xp.empty(shape, dtype=dtype) for _ in range(n_layers)]
        self.values = [xp.empty(shape, dtype=dtype) for _ in range(n_layers)]
        self.length, self.max_len = 0, max_len

    def extend(self, layer: int, k, v):
        """Write ``k`` and ``v`` (B, H, T, Dh) after the cached positions of ``layer``;
        return its keys and values so far (views, B, H, length + T, Dh)."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ShapeError(f"KVCache: {end} positions do not fit its {self.max_len}")
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """The ``n`` positions every layer has just written are cached from now on."""
        self.length += n

    def clear(self) -> None:
        """Forget every cached position (the buffers are kept for the next fill)."""
        self.length = 0


class CausalSelfAttention(Module):
    """Multi-head self-attention in which a position attends to itself and the ones before
    it, with a fused QKV projection (d -> 3d, laid out [q | k | v], each heads side by
    side, as GPT-2's ``c_attn``) and an output projection (``c_proj``)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        if d_model % n_heads:
            raise ShapeError(f"CausalSelfAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        self.c_attn = Linear(d_model, 3 * d_model)
        self.c_proj = Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        qkv = self.c_attn(x)
        if cache is None:
            heads = F.self_attention(qkv, self.n_heads, dropout_p=self.dropout, training=self.training, is_causal=True)
            return self.c_proj(heads)
        # a decoding step (no graph): the new keys and values join the cache, and the new
        # queries attend over every cached position and themselves
        B, T, _ = qkv.shape
        q, k, v = qkv.data.reshape(B, T, 3, self.n_heads, -1).transpose(2, 0, 3, 1, 4)
        keys, values = cache.extend(layer, k, v)
        out = F.scaled_dot_product_attention(Tensor(q), Tensor(keys), Tensor(values), is_causal=True, training=False)
        return self.c_proj(Tensor(out.data.transpose(0, 2, 1, 3).reshape(B, T, self.d_model)))


class MLP(Module):
    """c_proj(activation(c_fc(x))), GPT-2's feed-forward block (tanh GELU by default)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu_tanh"):
        self.c_fc = Linear(d_model, d_ff)
        self.c_proj = Linear(d_ff, d_model)
        self.activation = activation

    def forward(self, x):
        return self.c_proj(F.linear(x, self.c_fc.weight, self.c_fc.bias, activation=self.activation))


class DecoderBlock(Module):
    """x + dropout(attn(ln_1(x))), then x + dropout(mlp(ln_2(x))): GPT-2's pre-norm block
    (``attn_dropout``, default ``dropout``: on the attention probabilities)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, eps: float = 1e-5,
                 activation: str = "gelu_tanh", attn_dropout: float | None = None):
        self.ln_1 = LayerNorm(d_model, eps)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout if attn_dropout is None else attn_dropout)
        self.ln_2 = LayerNorm(d_model, eps)
        self.mlp = MLP(d_model, d_ff, activation)
        self.dropout = Dropout(dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        x = x + self.dropout(self.attn(self.ln_1(x), cache, layer))
        return x + self.dropout(self.mlp(self.ln_2(x)))


__all__ = ["KVCache", "CausalSelfAttention", "MLP", "DecoderBlock"]
