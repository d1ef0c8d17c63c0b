"""Embedding lookup; its backward is a scatter-add of gradient rows.
Guide: docs/backward.md#embedding
"""
from __future__ import annotations

from ..backend import get_array_module, scatter_add
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import check_ids


class Embedding(Function):
    """y[..., :] = W[ids[...], :], with W (V, D) and ids of any shape.

    Each output row is a copy of one row of W, so dL/dW[v] is the sum of the upstream
    gradient rows of every position whose id is v (a scatter-add: repeated ids
    accumulate), and rows of W no id selected get zero.

    Saves: nothing but the ids (a setting) and V.
    """

    def __init__(self, ids):
        self.ids = ids

    def check(self, weight):
        if weight.ndim != 2:
            raise ShapeError(f"embedding: weight must be (num_embeddings, dim), got shape {tuple(weight.shape)}")
        get_array_module(self.ids, weight)
        check_ids(self.ids, weight.shape[0], "embedding")

    def forward(self, weight):
        self.num_embeddings = weight.shape[0]
        return weight[self.ids]                                      # (*ids.shape, D)

    def backward(self, g):
        xp = get_array_module(g)
        grad = xp.zeros((self.num_embeddings, g.shape[-1]), dtype=g.dtype)  # (V, D)
        scatter_add(grad, self.ids, g)  # grad[ids[i]] += g[i], as np.add.at: repeated ids accumulate
        return grad


def embedding(ids, weight):
    """Rows of ``weight`` (V, D) selected by integer ``ids`` of any shape -> (*ids.shape, D)."""
    return Embedding(array_of(ids))(weight)
