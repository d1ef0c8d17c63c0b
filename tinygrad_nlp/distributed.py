"""The processes of a data-parallel run: one per CPU (or GPU), on MPI through ``mpi4py``
(Open MPI or MPICH), with NCCL through CuPy for GPUs, as ChainerMN and llm.c do it.
``nn.DataParallel`` is what training code uses; this module is what it talks through.

    mpirun -n 4 python -m mpi4py examples/mlm.py --batch-size 128     # 32 rows per process

    comm = distributed.init(device)   # rank and world size from the launcher
    comm.broadcast(array)              # every rank's array becomes rank 0's, in place
    comm.all_reduce(array)             # every rank's array becomes the sum over ranks, in place
    total = comm.sum(count)            # a number summed over ranks

The collectives on parameters work through these, one call per flat buffer (``nn.flat``):

    broadcast_parameters(comm, model.parameters())             # every rank starts from rank 0's
    all_reduce_gradients(comm, model.parameters(), count)      # the gradient of the global mean

``nn.DataParallel`` calls both. Without MPI, or with one process, ``init`` gives a
communicator of one that does nothing; ``mpi4py`` is needed only to run several.

A failure on one rank should end the job: ``abort(message)`` prints the rank's one-line
message and calls ``MPI_Abort``, which makes the launcher stop every process.
"""
from __future__ import annotations

import os
import sys

from . import backend
from .errors import MissingDependencyError
from .nn.flat import flatten

_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def launched_under_mpi() -> bool:
    """True when an MPI launcher (mpirun, mpiexec, srun) started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARIABLES) or "mpi4py" in sys.modules


def launcher_rank() -> int:
    """This process's rank as the MPI launcher numbered it (0 when none started it), known
    before MPI itself is set up."""
    for variable in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


class Communicator:
    """A communicator of one: what training code calls, doing nothing."""

    rank, world_size = 0, 1
    local_size = 1  # the processes of the run on this machine, this one included

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def broadcast(self, array) -> None:
        """Every rank's ``array`` becomes rank 0's, in place."""

    def all_reduce(self, array) -> None:
        """Every rank's ``array`` becomes the sum over the ranks, in place."""

    def sum(self, value: float) -> float:
        return float(value)

    def sums(self, values) -> list[float]:
        """Each of ``values`` summed over the ranks, in one collective."""
        return [float(v) for v in values]

    def barrier(self) -> None:
        pass

    def abort(self, message: str, code: int = 1):
        print(message, file=sys.stderr, flush=True)
        sys.exit(code)


class MPICommunicator(Communicator):
    """Processes started by an MPI launcher, talking over MPI (CPU arrays) or NCCL (GPU
    arrays, the NCCL id shared over MPI)."""

    def __init__(self, comm, device: str):
        self.comm, self.device = comm, device
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        from mpi4py import MPI
        on_this_machine = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = on_this_machine.Get_size()
        backend.threads.share_cores(self.local_size)
        self.nccl = None
        if device == "cuda":
            backend.use_gpu(on_this_machine.Get_rank())  # this process's place on its machine
            unique_id = backend.nccl_unique_id() if self.rank == 0 else None
            unique_id = comm.bcast(unique_id, root=0)
            self.nccl = backend.nccl_communicator(self.world_size, unique_id, self.rank)

    def all_reduce(self, array) -> None:
        if self.nccl is not None:
            backend.nccl_all_reduce(self.nccl, array)
        else:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)

    def broadcast(self, array) -> None:
        if self.nccl is not None:
            backend.nccl_broadcast(self.nccl, array, root=0)
        else:
            self.comm.Bcast(array, root=0)

    def sum(self, value: float) -> float:
        from mpi4py import MPI
        return float(self.comm.allreduce(float(value), op=MPI.SUM))

    def sums(self, values) -> list[float]:
        import numpy as np
        from mpi4py import MPI
        summed = np.array([float(v) for v in values], dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, summed, op=MPI.SUM)
        return summed.tolist()

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, message: str, code: int = 1):
        """Print this rank's message and end every process of the job now."""
        print(f"rank {self.rank}/{self.world_size}: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(code)


_world: MPICommunicator | None = None  # made once per process: MPI's world is one


def init(device: str = "cpu") -> Communicator:
    """The communicator of this run: MPI's world when an MPI launcher started more than
    one process (the same one on every call), otherwise a communicator of one (no MPI
    needed)."""
    global _world
    if _world is not None:
        return _world
    if not launched_under_mpi():
        return Communicator()
    try:
        from mpi4py import MPI
    except ImportError:
        raise MissingDependencyError("data-parallel training needs mpi4py: pip install 'tinygrad_nlp[distributed]' "
                                     "(and an MPI implementation such as Open MPI)") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return Communicator()
    _world = MPICommunicator(comm, device)
    return _world


def current() -> Communicator:
    """The communicator ``init`` made in this process, or one of one."""
    return _world if _world is not None else Communicator()


def broadcast_parameters(comm: Communicator, params) -> None:
    """Every process's parameters become rank 0's (one broadcast per flat buffer)."""
    if comm.world_size > 1:
        for buffer in flatten(params):
            comm.broadcast(buffer.data)


def all_reduce_gradients(comm: Communicator, params, count: float, total: float | None = None) -> float:
    """Replace each gradient by the sum over processes of ``grad * count / total``, the
    counts being how many items each process's loss is the mean of: the gradient of the
    mean over the whole global batch (``total``, the counts' sum, is summed here unless
    given). A parameter without a gradient here counts as zero. Returns the total count."""
    if comm.world_size == 1:
        return float(count)
    total = comm.sum(count) if total is None else total
    weight = float(count) / total if total else 0.0
    for buffer in flatten(params):
        grad = buffer.gather_gradients()
        grad *= grad.dtype.type(weight)
        comm.all_reduce(grad)
    return total


__all__ = ["Communicator", "MPICommunicator", "init", "current", "launched_under_mpi", "launcher_rank",
           "broadcast_parameters", "all_reduce_gradients"]
