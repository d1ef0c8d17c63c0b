"""Llama's decoder blocks (transformers' ``LlamaDecoderLayer``): RMSNorm before each
sublayer, causal self-attention with rotary position embeddings and grouped-query
attention (fewer key/value heads than query heads), and the SwiGLU MLP; no residual
dropout. Names follow transformers' (``self_attn.q_proj``, ``mlp.gate_proj``,
``input_layernorm``), so a checkpoint's names map one to one. The KV cache is
``decoder.KVCache``, sized by the key/value heads.
Guide: docs/backward.md#rotary-position-embeddings, docs/backward.md#grouped-query-attention
"""
from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .decoder import KVCache
from .layers import Linear, RMSNorm
from .module import Module


class LlamaAttention(Module):
    """Causal self-attention with ``n_heads`` query heads and ``n_kv_heads`` key/value
    heads of width ``head_dim`` (each key/value head serves n_heads / n_kv_heads query
    heads), queries and keys turned by their positions (RoPE, base ``theta``), and
    dropout on the probabilities (``dropout``, in training)."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, theta: float = 10000.0,
                 bias: bool = False, dropout: float = 0.0):
        self.n_heads, self.n_kv_heads, self.head_dim, self.theta, self.dropout = n_heads, n_kv_heads, head_dim, theta, \
            dropout
        self.q_proj = Linear(d_model, n_heads * head_dim, bias)
        self.k_proj = Linear(d_model, n_kv_heads * head_dim, bias)
        self.v_proj = Linear(d_model, n_kv_heads * head_dim, bias)
        self.o_proj = Linear(n_heads * head_dim, d_model, bias)

    def heads(self, x, n):
        """(B, T, n * head_dim) -> (B, n, T, head_dim)."""
        B, T, _ = x.shape
        return x.reshape(B, T, n, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x, positions, cache: KVCache | None = None, layer: int = 0):
        """``x`` (B, T, d_model) at absolute ``positions`` (T,); with ``cache``, the new keys
        and values join the cached ones of ``layer`` and the queries attend over all of them."""
        B, T, _ = x.shape
        q = F.rotary_embedding(self.heads(self.q_proj(x), self.n_heads), positions, self.theta)
        k = F.rotary_embedding(self.heads(self.k_proj(x), self.n_kv_heads), positions, self.theta)
        v = self.heads(self.v_proj(x), self.n_kv_heads)
        if cache is not None:  # a decoding step (no graph): attend over the cached positions and the new ones
            k, v = (Tensor(a) for a in cache.extend(layer, k.data, v.data))
        out = F.grouped_query_attention(q, k, v, dropout_p=self.dropout, is_causal=True, training=self.training)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, T, self.n_heads * self.head_dim))


class LlamaMLP(Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x)): the SwiGLU feed-forward block."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        self.gate_proj = Linear(d_model, d_ff, bias)
        self.up_proj = Linear(d_model, d_ff, bias)
        self.down_proj = Linear(d_ff, d_model, bias)

    def forward(self, x):
        return self.down_proj(F.swiglu(self.gate_proj(x), self.up_proj(x)))


class LlamaDecoderLayer(Module):
    """x + attn(norm_1(x)), then x + mlp(norm_2(x)), each norm an RMSNorm."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, d_ff: int, eps: float = 1e-6,
                 theta: float = 10000.0, attention_bias: bool = False, mlp_bias: bool = False, dropout: float = 0.0):
        self.input_layernorm = RMSNorm(d_model, eps)
        self.self_attn = LlamaAttention(d_model, n_heads, n_kv_heads, head_dim, theta, attention_bias, dropout)
        self.post_attention_layernorm = RMSNorm(d_model, eps)
        self.mlp = LlamaMLP(d_model, d_ff, mlp_bias)

    def forward(self, x, positions, cache: KVCache | None = None, layer: int = 0):
        x = x + self.self_attn(self.input_layernorm(x), positions, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


__all__ = ["LlamaAttention", "LlamaMLP", "LlamaDecoderLayer"]
