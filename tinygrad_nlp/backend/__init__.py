"""The one place that knows NumPy from CuPy, in rooms of one concern each:

- ``arrays``: devices (``"cpu"``: NumPy, ``"cuda"``: CuPy), the array module of an op's
  inputs, moving arrays, and the named functions where CPU and GPU code differ;
- ``random``: the seeded generator, dropout masks drawn per example, their state;
- ``memory``: the host allocator tuned for training, CuPy's pool, out-of-memory errors;
- ``threads``: thread replicas, BLAS threads, and long elementwise updates split across cores;
- ``kernels``: the fused-kernel switch, the one dispatch, loading and launching;
- ``collectives``: NCCL for ``tinygrad_nlp.distributed``.

Their public names are gathered here: ``backend.get_array_module``, ``backend.rng`` ...
"""
from . import arrays, collectives, kernels, memory, random, threads
from .arrays import (
    CACHE_BLOCK_BYTES,
    CUPY_INSTALL_HINT,
    DEVICES,
    asnumpy,
    check_device,
    cuda_available,
    cuda_unavailable_reason,
    device_of,
    erf,
    get_array_module,
    is_cupy_array,
    normal_cdf,
    require_cuda,
    rows_per_block,
    scatter_add,
    to_device,
    xp_for,
)
from .collectives import nccl_all_reduce, nccl_broadcast, nccl_communicator, nccl_unique_id, use_gpu
from .kernels import FUSED_KERNEL_NAMES, fused_kernels_from
from .memory import host_memory_kept, keep_host_memory, out_of_memory, release_cached_gpu_memory
from .random import examples_from, get_rng_state, keep_mask, manual_seed, philox_place, rng, set_rng_state
from .threads import default_threads, one_blas_thread, require_threadpoolctl

__all__ = [
    "arrays", "random", "memory", "threads", "kernels", "collectives",
    "CACHE_BLOCK_BYTES", "CUPY_INSTALL_HINT", "DEVICES", "asnumpy", "check_device", "cuda_available",
    "cuda_unavailable_reason", "device_of", "erf", "get_array_module", "is_cupy_array", "normal_cdf",
    "require_cuda", "rows_per_block", "scatter_add", "to_device", "xp_for",
    "nccl_all_reduce", "nccl_broadcast", "nccl_communicator", "nccl_unique_id", "use_gpu",
    "FUSED_KERNEL_NAMES", "fused_kernels_from",
    "host_memory_kept", "keep_host_memory", "out_of_memory", "release_cached_gpu_memory",
    "examples_from", "get_rng_state", "keep_mask", "manual_seed", "philox_place", "rng", "set_rng_state",
    "default_threads", "one_blas_thread", "require_threadpoolctl",
]
