"""Basic layers: Linear, Embedding, LayerNorm, Dropout, PositionalEncoding, RMSNorm."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ShapeError
from ..ops.checks import check_probability
from ..tensor import Tensor
from .module import Module, Parameter


def uniform_init(bound, shape):
    """float32 samples of U(-bound, bound) from the seeded CPU generator."""
    return backend.rng(np).uniform(-bound, bound, shape).astype(np.float32)


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features).

    Initialisation as PyTorch's ``nn.Linear``: W and b ~ U(-1/sqrt(in), 1/sqrt(in))
    (kaiming_uniform with a = sqrt(5)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = Parameter(uniform_init(bound, (out_features, in_features)))
        self.bias = Parameter(uniform_init(bound, (out_features,))) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Rows of a (num_embeddings, dim) table. Initialisation as PyTorch's
    ``nn.Embedding``: N(0, 1)."""

    def __init__(self, num_embeddings: int, dim: int):
        self.num_embeddings, self.dim = num_embeddings, dim
        self.weight = Parameter(backend.rng(np).standard_normal((num_embeddings, dim), dtype=np.float32))

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.dim}"


class LayerNorm(Module):
    """Layer norm over the last axis. Initialisation as PyTorch's ``nn.LayerNorm``:
    weight 1, bias 0."""

    def __init__(self, dim: int, eps: float = 1e-5):
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, dtype=np.float32))
        self.bias = Parameter(np.zeros(dim, dtype=np.float32))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout, active only in training mode (``model.train()``)."""

    def __init__(self, p: float = 0.5):
        self.p = check_probability(p)

    def forward(self, x, rows=None, batch_shape=None):
        """x's first axis its examples; or x's rows packed from flat positions ``rows`` of
        a (B, T) batch of ``batch_shape`` (``F.dropout``)."""
        return F.dropout(x, self.p, self.training, rows, batch_shape)

    def extra_repr(self):
        return f"p={self.p}"


def sinusoid_table(max_len: int, d_model: int) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)):
    each sin/cos pair shares one frequency (the MLM tutorial doubled the exponent and
    gave sin and cos different frequencies)."""
    position = np.arange(max_len, dtype=np.float64)[:, None]
    frequency = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: d_model // 2])
    return table.astype(np.float32)


class PositionalEncoding(Module):
    """Adds the fixed sinusoid table to (B, T, d_model) inputs (no parameters)."""

    def __init__(self, d_model: int, max_len: int):
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("table", sinusoid_table(max_len, d_model))

    def forward(self, x):
        T = x.shape[-2]
        if T > self.max_len:
            raise ShapeError(f"positional encoding: sequence length {T} is longer than max_len={self.max_len}")
        table = self._buffers["table"][:T]
        if table.dtype != x.dtype:
            table = table.astype(x.dtype)
        return x + Tensor(table)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"


class RMSNorm(Module):
    """Root-mean-square norm over the last axis (Llama's). Initialisation as transformers'
    ``LlamaRMSNorm``: weight 1."""

    def __init__(self, dim: int, eps: float = 1e-6):
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, dtype=np.float32))

    def forward(self, x):
        return F.rms_norm(x, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"
