"""Embedding lookup. Guide: docs/backward.md#embedding"""
from __future__ import annotations

from ..backend import get_array_module, scatter_add_rows
from ..errors import ShapeError, TokenIdError
from ..tensor import Function


def check_ids(ids, num_embeddings: int, what: str = "embedding") -> None:
    """Raise TokenIdError unless ``ids`` are integers in [0, num_embeddings)."""
    xp = get_array_module(ids)
    if not xp.issubdtype(ids.dtype, xp.integer):
        raise TokenIdError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
    if ids.size == 0:
        return
    bad = (ids < 0) | (ids >= num_embeddings)
    if bool(bad.any()):
        position = tuple(int(i) for i in xp.argwhere(bad)[0])
        value = int(ids[position])
        raise TokenIdError(
            f"{what}: token id {value} at position {position} is out of range for a vocabulary of {num_embeddings} "
            f"(valid ids are 0..{num_embeddings - 1})"
        )


class Embedding(Function):
    """y[..., :] = W[ids[...], :], with W (V, D) and ids of any shape.

    Each output row is a copy of one row of W, so dL/dW[v] is the sum of the upstream
    gradient rows of every position whose id is v (a scatter-add: repeated ids
    accumulate), and rows of W no id selected get zero.
    """

    def __init__(self, ids):
        self.ids = ids

    def forward(self, weight):
        if weight.ndim != 2:
            raise ShapeError(f"embedding: weight must be (num_embeddings, dim), got shape {tuple(weight.shape)}")
        get_array_module(self.ids, weight)
        check_ids(self.ids, weight.shape[0])
        self.num_embeddings = weight.shape[0]
        return weight[self.ids]

    def backward(self, g):
        return scatter_add_rows(self.num_embeddings, self.ids, g)
