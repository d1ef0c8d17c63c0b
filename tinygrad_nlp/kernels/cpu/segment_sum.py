"""The scatter-add of rows (``out[ids[i]] += values[i]``) as a sorted segment sum on the
CPU: equal to ``np.add.at`` to rounding, and registered for the three ops whose math is
that scatter-add: the embedding's backward, ``GetItem``'s backward when one integer
array picks rows, and ``ScatterRows``' forward.

Why it is faster: ``np.add.at`` adds one row at a time through a generic indexed loop.
A stable sort groups equal ids instead; an id seen once is copied, and the rows of each
repeated id are summed by ``np.add.reduceat`` in one vectorised call (a per-segment
overhead, so only the repeated ones go through it). The order of each sum is the order
of the ids, so the result is the same on every run.
"""
from __future__ import annotations

import math

import numpy as np

from ...backend import get_array_module, kernels
from ...ops.embedding import Embedding
from ...ops.shape import GetItem, ScatterRows


def as_rows(indices, values):
    """indices flattened (n,) and values as the (n, width) rows they place."""
    return indices.reshape(-1), values.reshape(indices.size, math.prod(values.shape[indices.ndim:]))


def scatter_add_rows(num_rows: int, indices, values):
    """``out[indices[i]] += values[i]`` into a fresh ``(num_rows, width)`` array, repeated
    indices accumulating in the order they come."""
    indices, rows = as_rows(indices, values)
    out = np.zeros((num_rows, rows.shape[1]), dtype=values.dtype)
    if indices.size:
        order = np.argsort(indices, kind="stable")
        sorted_ids = indices[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        once = np.diff(np.r_[starts, indices.size]) == 1
        out[sorted_ids[starts[once]]] = rows[order[starts[once]]]
        if not once.all():
            repeated = np.repeat(~once, np.diff(np.r_[starts, indices.size]))
            rep_order, rep_ids = order[repeated], sorted_ids[repeated]
            rep_starts = np.flatnonzero(np.r_[True, rep_ids[1:] != rep_ids[:-1]])
            out[rep_ids[rep_starts]] = np.add.reduceat(rows[rep_order], rep_starts, axis=0)
    return out


# Each class calls ``self.scatter_add_rows``, so the CUDA paths (kernels/cuda/segment_sum.py)
# are these classes with the GPU's segment-sum kernel in its place.
@kernels.register(Embedding, device="cpu")
class EmbeddingSegmentSum(Embedding):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def backward(self, g):
        return self.scatter_add_rows(self.num_embeddings, self.ids, g)


def _one_row_index(index):
    """The integer array of ``x[index]`` when it picks whole rows by one 1-D array, else None."""
    parts = index if isinstance(index, tuple) else (index,)
    only = parts[0] if len(parts) == 1 else None
    return only if hasattr(only, "shape") and only.ndim == 1 and only.dtype != bool else None


@kernels.register(GetItem, device="cpu")
class GetItemSegmentSum(GetItem):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def backward(self, g):
        rows = _one_row_index(self.index)
        if rows is None:
            return super().backward(g)
        n = self.x_shape[0]
        return self.scatter_add_rows(n, rows % max(n, 1), g).reshape(self.x_shape)


@kernels.register(ScatterRows, device="cpu")
class ScatterRowsSegmentSum(ScatterRows):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def forward(self, x):
        index = self.index
        if index.size < 2 or bool((index[1:] > index[:-1]).all()):  # increasing, so distinct: one copy
            y = get_array_module(x).zeros((self.num_rows,) + x.shape[1:], dtype=x.dtype)
            y[index] = x
            return y
        return self.scatter_add_rows(self.num_rows, index, x).reshape((self.num_rows,) + x.shape[1:])
