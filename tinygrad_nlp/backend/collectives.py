"""NCCL through CuPy: the GPU collectives ``tinygrad_nlp.distributed`` runs between
processes (MPI carries the CPU arrays and NCCL's unique id)."""
from __future__ import annotations

from . import arrays


def use_gpu(index: int) -> None:
    """Make GPU ``index`` (of those visible, modulo their count) this process's device."""
    arrays.require_cuda()
    cupy = arrays.cupy_module()
    cupy.cuda.Device(index % cupy.cuda.runtime.getDeviceCount()).use()


def _nccl():
    arrays.require_cuda()
    from cupy.cuda import nccl
    return nccl


def nccl_unique_id():
    """A new NCCL unique id (rank 0 makes it and shares it over MPI)."""
    return _nccl().get_unique_id()


def nccl_communicator(world_size: int, unique_id, rank: int):
    return _nccl().NcclCommunicator(world_size, unique_id, rank)


def _nccl_type(array):
    nccl = _nccl()
    return {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "float16": nccl.NCCL_FLOAT16}[array.dtype.name]


def _stream() -> int:
    return arrays.cupy_module().cuda.get_current_stream().ptr


def nccl_all_reduce(communicator, array) -> None:
    """Sum ``array`` (contiguous, on this process's GPU) over all ranks, in place."""
    communicator.allReduce(array.data.ptr, array.data.ptr, array.size, _nccl_type(array), _nccl().NCCL_SUM, _stream())


def nccl_broadcast(communicator, array, root: int = 0) -> None:
    """Every rank's ``array`` becomes rank ``root``'s, in place."""
    communicator.bcast(array.data.ptr, array.size, _nccl_type(array), root, _stream())


__all__ = ["use_gpu", "nccl_unique_id", "nccl_communicator", "nccl_all_reduce", "nccl_broadcast"]
