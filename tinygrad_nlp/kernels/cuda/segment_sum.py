"""The scatter-add of rows as a GPU segment sum (embedding_backward.cu): the CPU
segment-sum paths (kernels/cpu/segment_sum.py) with this kernel in their place.

Why: CuPy's scatter-add (the textbook path on the GPU) adds with atomics, so the order
of a repeated id's sum, and the last bit of a float32 result, depend on timing. Here the
ids are sorted (CuPy's stable radix sort) and one thread per (segment, column) sums its
segment in order: no atomics, the same result on every run.
"""
from __future__ import annotations

import pathlib

from ...backend import get_array_module, kernels
from ...ops.embedding import Embedding
from ...ops.shape import GetItem, ScatterRows
from ..cpu.segment_sum import EmbeddingSegmentSum, GetItemSegmentSum, ScatterRowsSegmentSum, as_rows

SOURCE = pathlib.Path(__file__).with_name("embedding_backward.cu")
THREADS = 256


def scatter_add_rows(num_rows: int, indices, values):
    """``out[indices[i]] += values[i]`` into a fresh ``(num_rows, width)`` array, each
    repeated index's rows summed in order by one thread per column."""
    xp = get_array_module(indices, values)
    indices, rows = as_rows(indices, values)
    out = xp.zeros((num_rows, rows.shape[1]), dtype=values.dtype)
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
    width = rows.shape[1]
    sums = xp.empty((starts.size, width), dtype=values.dtype)
    blocks = -(-starts.size * width // THREADS)
    kernels.launch_grid(SOURCE, "segment_sum", values.dtype, blocks, THREADS,
                        (xp.ascontiguousarray(rows), order, starts, ends, xp.int64(starts.size), xp.int64(width), sums))
    out[sorted_ids[starts]] = sums
    return out


@kernels.register(Embedding, device="cuda", kernel="embedding_backward")
class EmbeddingSegmentSumKernel(EmbeddingSegmentSum):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def suits(self, weight):
        return kernels.suits_kernel(weight)


@kernels.register(GetItem, device="cuda", kernel="embedding_backward")
class GetItemSegmentSumKernel(GetItemSegmentSum):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def suits(self, x):
        return kernels.suits_kernel(x)


@kernels.register(ScatterRows, device="cuda", kernel="embedding_backward")
class ScatterRowsSegmentSumKernel(ScatterRowsSegmentSum):
    scatter_add_rows = staticmethod(scatter_add_rows)

    def suits(self, x):
        return kernels.suits_kernel(x)
