"""The speed room: faster ways to compute the ops of ``ops/``, apart from their math.

``cpu/`` holds array tricks on NumPy (BLAS standing in for reductions, passes in place,
cache-sized blocks, block-shared maxima, sorted segment sums, gradients formed in the
forward); ``cuda/`` holds CUDA kernels as readable ``.cu`` files with the Python that
launches them. Each class here is a subclass of the textbook op it equals, registered
for it with ``backend.kernels.register``; ``Function.__call__`` finds it through the one
dispatch (``backend.kernels.implementation``), never the op's own methods. Each file
says which op it equals and why it is faster; tests/test_fast_paths.py holds every one
to its op (values, float64 gradients). Importing this package registers them all.
"""
from . import cpu, cuda

__all__ = ["cpu", "cuda"]
