"""Embedding lookup; its backward is a scatter-add of gradient rows.
Guide: docs/backward.md#embedding
"""
from __future__ import annotations

import math
import pathlib

from ..backend import get_array_module, kernels, per_device, scatter_add
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import check_ids


def _scatter_add_rows_cpu(indices, values, num_rows: int):
    """Group equal ids with a stable sort and sum each group in order (deterministic,
    and much faster than ``np.add.at`` for wide rows)."""
    xp = get_array_module(indices, values)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    if indices.size == 0:
        return out
    order = xp.argsort(indices, kind="stable")
    sorted_ids = indices[order]
    starts = xp.flatnonzero(xp.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    lengths = xp.diff(xp.r_[starts, indices.size])
    # ids that occur once are copied; reduceat pays a per-segment overhead, so it only
    # sums the repeated ones (several times faster on mostly distinct ids, benchmarks/ops.py)
    once = lengths == 1
    out[sorted_ids[starts[once]]] = values[order[starts[once]]]
    if not once.all():
        repeated = xp.repeat(~once, lengths)
        rep_order, rep_ids = order[repeated], sorted_ids[repeated]
        rep_starts = xp.flatnonzero(xp.r_[True, rep_ids[1:] != rep_ids[:-1]])
        out[rep_ids[rep_starts]] = xp.add.reduceat(values[rep_order], rep_starts, axis=0)
    return out


def _scatter_add_rows_atomic(indices, values, num_rows: int):
    """``cupyx.scatter_add`` on the GPU: atomic adds, so the order of a repeated id's
    sum depends on timing (the last bit of a float32 sum may differ run to run)."""
    xp = get_array_module(indices, values)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    scatter_add(out, indices, values)
    return out


_SEGMENT_SUM_SOURCE = pathlib.Path(__file__).parents[1] / "kernels" / "cuda" / "embedding_backward.cu"
_SEGMENT_SUM_THREADS = 256


def _scatter_add_rows_kernel(indices, values, num_rows: int):
    """Sort the ids, then one GPU thread per (segment, column) sums its segment in order
    (``embedding_backward.cu``): no atomics, so the result does not depend on timing."""
    xp = get_array_module(indices, values)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    if indices.size == 0:
        return out
    indices = indices.astype(xp.int64, copy=False)
    order = xp.argsort(indices).astype(xp.int64)  # CuPy's argsort is a stable radix sort
    sorted_ids = indices[order]
    boundary = xp.ones(sorted_ids.shape, dtype=bool)
    boundary[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = xp.flatnonzero(boundary).astype(xp.int64)
    ends = xp.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = sorted_ids.size
    width = values.shape[1]
    sums = xp.empty((starts.size, width), dtype=values.dtype)
    blocks = -(-starts.size * width // _SEGMENT_SUM_THREADS)
    kernels.launch_grid(_SEGMENT_SUM_SOURCE, "segment_sum", values.dtype, blocks, _SEGMENT_SUM_THREADS,
                        (xp.ascontiguousarray(values), order, starts, ends, xp.int64(starts.size), xp.int64(width), sums))
    out[sorted_ids[starts]] = sums
    return out


_scatter_add_rows = kernels.dispatch("embedding_backward", kernel=_scatter_add_rows_kernel,
                                     generic=per_device(cpu=_scatter_add_rows_cpu, cuda=_scatter_add_rows_atomic))


def scatter_add_rows(num_rows: int, indices, values):
    """``out[indices[i]] += values[i]`` into a fresh ``(num_rows, D)`` array, repeated
    indices accumulating: in sorted order on the CPU and with the GPU's segment-sum
    kernel (deterministic), by atomic adds on the GPU's generic path."""
    values = values.reshape(indices.size, math.prod(values.shape[indices.ndim:]))
    return _scatter_add_rows(indices.reshape(-1), values, num_rows)


class Embedding(Function):
    """y[..., :] = W[ids[...], :], with W (V, D) and ids of any shape.

    Each output row is a copy of one row of W, so dL/dW[v] is the sum of the upstream
    gradient rows of every position whose id is v (a scatter-add: repeated ids
    accumulate), and rows of W no id selected get zero.
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
        return weight[self.ids]

    def backward(self, g):
        return scatter_add_rows(self.num_embeddings, self.ids, g)


def embedding(ids, weight):
    """Rows of ``weight`` (V, D) selected by integer ``ids`` of any shape -> (*ids.shape, D)."""
    return Embedding(array_of(ids))(weight)
