"""Data-parallel training by wrapping the model: the training loop does not change.

    model = DataParallel(model, threads=2)   # before the loop (under mpirun: every process)
    for ids, targets in batches:             # the global batch, the same on every process
        optimizer.zero_grad()
        loss = model.loss(ids, targets)       # this process's rows, shared out to its threads
        loss.backward()                       # every replica's backward, then the all-reduce
        optimizer.step()

The wrapper owns everything data-parallel, as PyTorch's DistributedDataParallel and
ChainerMN's multi-node optimizer do:

- **Shares.** Each process (an MPI rank, ``tinygrad_nlp.distributed``) takes its
  contiguous share of every global batch, and each of its threads a contiguous share of
  that (``share``, the one rule for both). Threads pay on a CPU: NumPy runs an
  elementwise pass on one core, and those passes are half of a Transformer's step, so
  each thread runs the whole forward and backward on its rows with its own replica and
  a BLAS of one thread.
- **Weights.** Every process starts from rank 0's parameters (a broadcast when wrapped,
  ``distributed.broadcast_parameters``). A thread replica (``nn.replicas``) holds the
  model's arrays in Parameters of its own, whose gradients a hook sends straight into the
  model's, added in replica order (replica k's after those of 0..k-1, whichever thread
  completes the turn), so the sum is the same floating-point sum every run.
- **Counts.** The model's ``loss`` returns a ``Loss``: the mean over ``count`` items
  (scored tokens, examples), and extra outputs (correct predictions). Each replica's
  backward starts from count / (this process's count), and the gradients are all-reduced
  over processes weighted by each one's count (``distributed.all_reduce_gradients``):
  the result is the gradient of the mean over the whole global batch, accumulated as
  ``loss.backward()`` would. The wrapper's ``Loss`` is the global mean, its count the
  global count, its outputs the global sums.
- **Dropout.** Masks are drawn per example (``backend.random``): each replica draws
  for its rows' places in the global batch, its draws numbered from the run's count,
  so an example gets the same mask on any number of threads and processes, and the
  same seed gives the same losses on 1 replica or N, up to the order of float sums.

A GPU runs every op on all its cores already: there each process has one replica. Wrap
the model after it has moved to its device and dtype (``to`` replaces the arrays the
replicas share). Every other attribute is the model's: ``model.evaluate``,
``model.parameters()``, ``model.module`` (the model itself).
"""
from __future__ import annotations

import importlib
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .. import backend, distributed
from ..errors import ArgumentError, ShapeError, TinygradNLPError
from ..tensor import Function, Tensor, is_grad_enabled
from .module import Loss, Module
from .replicas import thread_replicas


def share(n: int, parts: int, index: int) -> slice:
    """Part ``index`` of ``n`` rows cut into ``parts`` contiguous parts that differ by at
    most one row and cover all ``n`` in order: the share rule of processes and threads."""
    base, extra = divmod(int(n), int(parts))
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


class DataParallel:
    """``module`` trained data-parallel over this run's processes (``comm``, default
    ``distributed.init``) and ``threads`` threads in each (default 1; ``None``: the CPU's
    cores shared among this machine's processes, ``backend.default_threads``)."""

    def __init__(self, module: Module, threads: int | None = 1, comm: distributed.Communicator | None = None):
        comm = comm if comm is not None else distributed.init(module.device)
        if threads is None:
            threads = backend.default_threads(module.device, comm.local_size)
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ArgumentError(f"DataParallel: threads must be a positive integer, got {threads!r}")
        if threads > 1 and module.device != "cpu":
            raise ArgumentError(f"DataParallel: threads={threads} on {module.device}: a GPU runs one replica "
                                "(threads=1), each op already using all its cores")
        if threads > 1:
            backend.require_threadpoolctl()
        self.module, self.threads, self.comm = module, int(threads), comm
        distributed.broadcast_parameters(self.comm, module.parameters())  # every process starts from rank 0's weights
        self.replicas, self._order = [module], None
        if self.threads > 1:
            self.replicas, self._order = thread_replicas(module, self.threads)
        self._modules = [list(replica.modules()) for replica in self.replicas]
        self._pool = ThreadPoolExecutor(self.threads - 1, "replica") if self.threads > 1 else None

    @property
    def replicas_in_all(self) -> int:
        return self.comm.world_size * self.threads

    def rows_of_process(self, n: int, rank: int | None = None) -> slice:
        """The rows of a global batch of ``n`` that process ``rank`` (default: this one) takes."""
        return share(n, self.comm.world_size, self.comm.rank if rank is None else rank)

    def rows_per_process(self, n: int) -> list[int]:
        """How many rows of a global batch of ``n`` each process takes, in rank order."""
        return [len(range(n)[self.rows_of_process(n, rank)]) for rank in range(self.comm.world_size)]

    def loss(self, *batch) -> Loss:
        """``module.loss(*rows)`` of this process's rows of the global ``batch`` (host
        arrays, first axis the rows), run by its replicas in threads; its ``backward``
        gives every parameter the gradient of the whole global batch's mean loss."""
        n = _rows_of(batch, "DataParallel.loss")
        if self.replicas_in_all == 1:
            return self.module.loss(*(backend.to_device(a, self.module.device) for a in batch))
        mine = self.rows_of_process(n)
        first = mine.start
        shares = [share(mine.stop - first, self.threads, k) for k in range(self.threads)]
        shares = [slice(first + s.start, first + s.stop) for s in shares]
        parts = [[backend.to_device(a[rows], self.module.device) for a in batch] for rows in shares]
        self._copy_modes()
        first_draw = backend.random.draws_made()
        draws = [first_draw] * self.threads  # where each replica's draws end

        def replica_loss(k):
            with backend.examples_from(shares[k].start, first_draw) as place:
                loss = _replica_loss(self.replicas[k], parts[k])
            draws[k] = place.next_draw
            return loss
        losses = self._run(replica_loss, shares)
        backend.random.set_draws_made(max(draws))  # every replica drew alike (one without rows: nothing)
        return self._combined(losses, shares)

    def __call__(self, *batch):
        """``module(*batch)`` for inference, under ``no_grad``: the replicas run this
        process's threads' shares of all the rows of ``batch`` (host arrays, first axis
        the rows; no share between processes) and their outputs (a Tensor, or a tuple of
        Tensors or None, first axis the rows) are joined in row order. To train, ``loss``."""
        if is_grad_enabled():
            raise ArgumentError("DataParallel(...)(batch): the forward in threads is for inference, under no_grad; "
                                "train with .loss(batch)")
        n = _rows_of(batch, "DataParallel(...)")

        def to_device(a):
            return a if a is None else backend.to_device(a, self.module.device)
        if self.threads == 1:
            return self.module(*(to_device(a) for a in batch))
        shares = [share(n, self.threads, k) for k in range(self.threads)]
        parts = [[None if a is None else to_device(a[rows]) for a in batch] for rows in shares]
        self._copy_modes()
        first_draw = backend.random.draws_made()
        draws = [first_draw] * self.threads

        def forward(k):
            with backend.examples_from(shares[k].start, first_draw) as place:
                out = self.replicas[k](*parts[k])
            draws[k] = place.next_draw
            return out
        out = _joined(self._run(forward, shares))
        backend.random.set_draws_made(max(draws))
        return out

    def _copy_modes(self) -> None:
        """Each replica's modules train or evaluate as the model's do."""
        for replica_modules in self._modules:
            for theirs, ours in zip(replica_modules, self.module.modules()):
                theirs.training = ours.training

    def _run(self, job, shares):
        """``job(k)`` for every replica k with rows, replica 0 on this thread; every
        thread done before a replica's error is raised, naming its rows."""
        ks = [k for k, rows in enumerate(shares) if rows.stop > rows.start]
        if len(ks) < 2:
            return [_located_call(job, k, shares[k]) for k in ks]
        with backend.one_blas_thread():
            futures = [self._pool.submit(job, k) for k in ks[1:]]
            try:
                results = [job(ks[0])]
            except Exception as error:
                wait(futures)
                raise _located(error, ks[0], shares[ks[0]]) from error
            for k, future in zip(ks[1:], futures):
                if future.exception() is not None:
                    raise _located(future.exception(), k, shares[k]) from future.exception()
            return results + [future.result() for future in futures]

    def _combined(self, losses, shares) -> Loss:
        """The global mean of the replicas' losses, whose backward runs theirs."""
        counts = [loss.count for loss in losses]
        local = sum(counts)
        names = list(losses[0].outputs)
        # the count, the count-weighted loss and each output, summed over the processes in one collective
        total, weighted, *summed = self.comm.sums([local, sum(c * loss.item() for c, loss in zip(counts, losses) if c)]
                                                  + [sum(loss.outputs[name] for loss in losses) for name in names])
        value = weighted / total if total else 0.0
        outputs = dict(zip(names, summed))
        node = _ReplicaBackward(self, losses, shares, local, total)
        first = losses[0]
        xp = backend.get_array_module(first.data)
        combined = Tensor(xp.asarray(value, dtype=first.dtype))
        if any(loss.requires_grad for loss in losses):
            combined.requires_grad, combined.creator = True, node
            node.output_shape, node.output_dtype = combined.shape, combined.dtype
        return Loss(combined, total, **outputs)

    def __getattr__(self, name):
        if name in ("module", "replicas"):  # not yet set: __init__ failed early
            raise AttributeError(name)
        return getattr(self.module, name)

    def close(self) -> None:
        """Stop the worker threads (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()

    def __repr__(self):
        return f"DataParallel({type(self.module).__name__}, threads={self.threads}, processes={self.comm.world_size})"


class _ReplicaBackward(Function):
    """The graph node of a data-parallel loss: its backward runs each replica's backward
    in the replica's thread, from count / (this process's count), then all-reduces the
    gradients over the processes, each weighted by its count."""

    def __init__(self, parallel: DataParallel, losses, shares, local_count: float, total_count: float):
        self.parallel, self.losses, self.shares = parallel, losses, shares
        self.local_count, self.total_count = local_count, total_count

    def backward(self, g):
        parallel, local = self.parallel, self.local_count
        ks = [k for k, rows in enumerate(self.shares) if rows.stop > rows.start]
        by_replica = dict(zip(ks, self.losses))
        if parallel._order is not None:
            parallel._order.start(parallel.threads, len(ks))  # the replicas without rows are the last ones
        retain = not self.may_overwrite_saved

        def job(k):
            loss = by_replica[k]
            try:  # with nothing to count here, every replica goes back from 0: zero gradients, as one model's
                if loss.requires_grad and (loss.count or not local):
                    weight = g * (loss.count / local) if local else 0 * g
                    xp = backend.get_array_module(loss.data)
                    loss.backward(xp.full(loss.shape, weight, dtype=loss.dtype), retain_graph=retain)
            finally:
                if parallel._order is not None:
                    parallel._order.finish(k)
        parallel._run(job, self.shares)
        distributed.all_reduce_gradients(parallel.comm, parallel.module.parameters(), local, self.total_count)
        return ()

    def release(self) -> None:
        super().release()
        self.losses = ()


def _rows_of(batch, where: str) -> int:
    """The row count the arrays of ``batch`` share (None entries aside), or a ShapeError."""
    rows = [len(a) for a in batch if a is not None]
    if not rows:
        raise ArgumentError(f"{where}: got no batch arrays to share out")
    if any(r != rows[0] for r in rows):
        raise ShapeError(f"{where}: the batch arrays have {rows} rows; they must have the same number")
    return rows[0]


def _joined(outputs):
    """The replicas' outputs joined along the rows: Tensors, or tuples of Tensors or None."""
    first = outputs[0]
    if isinstance(first, tuple):
        return tuple(_joined([out[i] for out in outputs]) for i in range(len(first)))
    if first is None:
        return None
    xp = backend.get_array_module(first.data)
    return Tensor(xp.concatenate([out.data for out in outputs]))


def _replica_loss(replica, rows) -> Loss:
    loss = replica.loss(*rows)
    if not isinstance(loss, Loss):
        raise ArgumentError(f"DataParallel: {type(replica).__name__}.loss returned {type(loss).__name__}, not a Loss "
                            "(the mean, how many items it is over, and any extra outputs)")
    return loss


def _located_call(job, k, rows):
    try:
        return job(k)
    except Exception as error:
        raise _located(error, k, rows) from error


def _located(error: Exception, k: int, rows: slice) -> Exception:
    """The replica's error, of the same class, saying whose rows it came from (a
    position in the message counts from the replica's first row)."""
    if not isinstance(error, TinygradNLPError):
        return error
    return type(error)(f"{error} (replica {k}, rows {rows.start}..{rows.stop - 1} of the batch)")


_MOVED = {"SharedGradient": (".replicas", "ReplicaParameter"),  # old name: (its module now, its name there)
          "broadcast_parameters": ("..distributed", "broadcast_parameters"),
          "all_reduce_gradients": ("..distributed", "all_reduce_gradients")}


def __getattr__(name):
    """The names that moved out of this module, kept a while with a DeprecationWarning."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_MOVED[name][0], __package__)
    warnings.warn(f"{__name__}.{name} is now {module.__name__}.{_MOVED[name][1]}", DeprecationWarning, stacklevel=2)
    return getattr(module, _MOVED[name][1])


__all__ = ["DataParallel", "Loss", "share"]
