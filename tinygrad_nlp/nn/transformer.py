"""Transformer encoder blocks, written as the tutorials' PyTorch code reads."""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ShapeError
from ..ops.activations import check_activation
from .layers import Dropout, LayerNorm, Linear, uniform_init
from .module import Module, ModuleList, Parameter


class Packing(NamedTuple):
    """Which positions of a (B, T) batch a stack of layers computes, as rows stored one
    after another: ``rows`` (flat indices into the B T positions, in order), how many of
    them each batch row has (``lengths``: the sequences that attend among themselves),
    which of them are keys (``key_mask``, None when every row is: a padding position
    among the rows is a query only) and the batch's own key-padding ``mask`` (B, T)
    (None: no padding)."""

    shape: tuple
    mask: Any
    rows: Any
    lengths: Any
    key_mask: Any

    @classmethod
    def reaching(cls, positions, mask, shape) -> Packing:
        """The rows that reach ``positions`` (flat indices) of a (B, T) batch whose
        key-padding ``mask`` is True on real tokens: the real tokens, which every token
        may see, and the positions themselves (a padding position is seen by none)."""
        B, T = shape
        xp = backend.get_array_module(positions)
        kept = xp.ones(B * T, dtype=bool) if mask is None else mask.reshape(-1).copy()
        kept[positions] = True
        rows = xp.flatnonzero(kept)
        keys = None if mask is None else mask.reshape(-1)[rows]
        return cls(shape, mask, rows, kept.reshape(B, T).sum(axis=1), None if keys is None or bool(keys.all()) else keys)

    @property
    def whole_grid(self) -> bool:
        """Whether the rows are every position of the batch, (B, T) in order."""
        return self.rows.size == self.shape[0] * self.shape[1]

    def places(self, positions):
        """Where ``positions`` stand among the rows, to pick them out; None when they are
        the rows themselves, in order (nothing to pick)."""
        if positions.size == self.rows.size and bool((positions == self.rows).all()):
            return None
        return backend.get_array_module(positions).searchsorted(self.rows, positions)


class MultiHeadAttention(Module):
    """Self-attention with one fused QKV projection (d -> 3d) and an output projection.

    Initialisation as PyTorch's ``nn.MultiheadAttention``: the QKV weight is
    Xavier-uniform over the (3d, d) matrix with zero bias; the output projection has
    ``nn.Linear``'s weight and a zero bias.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        if d_model % n_heads:
            raise ShapeError(f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.dropout = d_model, n_heads, dropout
        self.qkv = Linear(d_model, 3 * d_model)
        self.qkv.weight = Parameter(uniform_init(math.sqrt(6.0 / (4 * d_model)), (3 * d_model, d_model)))
        self.qkv.bias = Parameter(np.zeros(3 * d_model, dtype=np.float32))
        self.out = Linear(d_model, d_model)
        self.out.bias = Parameter(np.zeros(d_model, dtype=np.float32))

    def forward(self, x, mask=None):
        """x (B, T, d_model); mask an optional (B, T) key-padding mask, True = real token."""
        heads = F.self_attention(self.qkv(x), self.n_heads, mask=mask, dropout_p=self.dropout, training=self.training)
        return self.out(heads)

    def on_rows(self, x, packing: Packing, wanted=None):
        """Self-attention of the (N, d_model) rows ``packing`` names, each batch row's
        rows attending among themselves: ``F.ragged_self_attention``, or, when the rows
        are the whole (B, T) grid, ``F.self_attention`` on it with the padding masked
        as keys. With ``wanted`` (places among the rows), the output at those rows
        alone, the output projection run on them only."""
        qkv = self.qkv(x)
        if packing.whole_grid:
            B, T = packing.shape
            heads = F.self_attention(F.reshape(qkv, (B, T, -1)), self.n_heads, mask=packing.mask,
                                     dropout_p=self.dropout, training=self.training)
            heads = F.reshape(heads, (B * T, -1))
        else:
            T = packing.shape[1]
            heads = F.ragged_self_attention(qkv, packing.lengths, self.n_heads, key_mask=packing.key_mask,
                                            dropout_p=self.dropout, training=self.training,
                                            positions=packing.rows % T, seq_len=T)
        return self.out(heads if wanted is None else heads[wanted])

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, dropout={self.dropout}"


class FeedForward(Module):
    """linear2(dropout(activation(linear1(x)))), as PyTorch's encoder layer; ``activation``
    a name of ``ops.activations.ACTIVATIONS`` ("relu", "gelu" (exact, as PyTorch's),
    "gelu_tanh", "silu")."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        self.activation = check_activation(activation, "FeedForward")
        self.linear1 = Linear(d_model, d_ff)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(d_ff, d_model)

    def forward(self, x):
        # activation(linear1(x)) as one op: on the GPU, one kernel for the bias and the activation
        hidden = F.linear(x, self.linear1.weight, self.linear1.bias, activation=self.activation)
        return self.linear2(self.dropout(hidden))

    def extra_repr(self):
        return f"activation={self.activation!r}"


class TransformerEncoderLayer(Module):
    """One encoder block.

    pre-norm  (``norm_first=True``):  x = x + drop(mha(norm1(x))); x = x + drop(ff(norm2(x)))
    post-norm (``norm_first=False``): x = norm1(x + drop(mha(x))); x = norm2(x + drop(ff(x)))
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = True,
                 activation: str = "relu"):
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)

    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask))
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask)))
        return self.norm2(x + self.dropout2(self.ff(x)))

    def extra_repr(self):
        return f"norm_first={self.norm_first}"


class TransformerEncoder(Module):
    """A stack of ``n_layers`` identical (but separately initialised) encoder layers."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = True, activation: str = "relu"):
        self.layers = ModuleList(
            TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation) for _ in range(n_layers)
        )

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x
