"""Data parallelism over one machine's CPU cores: a replica of the model per thread,
each taking its share of every batch.

NumPy runs an elementwise pass (softmax, layer norm, dropout, an activation) on one
core, and those passes are about half of a Transformer's training step, so on a CPU
with two or more cores a step leaves the others idle for half its time. Here each
thread runs the whole forward, loss and backward on its own rows of the batch with its
own replica, and each multiplies with a BLAS of one thread; every core is busy all
step. The arithmetic is that of ``distributed.py``'s ranks, in one process:

- A replica (``Module.replica``) holds the model's arrays in Parameters of its own: it
  computes with the model's current weights, so the optimizer's in-place update reaches
  every replica, and it gathers its gradients in a flat buffer of its own
  (``FlatBuffer(params, data=model's)``), the model's being replica 0.
- ``loss_of(replica, *rows)`` is a mean over ``count(*rows)`` items (scored tokens,
  examples). Each replica's backward starts from count / total instead of 1, so the
  replicas' gradients add up to the gradient of the mean over the whole batch, which
  ``backward`` adds into the model's gradients (accumulating, like ``loss.backward()``).
- Dropout in replica k draws from a generator of its own, seeded each step from the
  backend's generator: the same seed gives the same losses run after run (other masks,
  so other losses, than with one thread), and a checkpoint of the backend's generator
  resumes exactly.

    parallel = DataParallel(model)              # one thread per core (threadpoolctl installed)
    optimizer = Adam(model.parameters(), lr=1e-4)
    for ids, targets in batches:
        optimizer.zero_grad()
        loss = parallel.backward(lambda m, ids, targets: m.loss(ids, targets), ids, targets,
                                 count=lambda ids, targets: (targets != -100).sum())
        optimizer.step()

A GPU runs every op on all its cores already: there ``DataParallel`` has one replica and
``backward`` is ``loss_of(model, *batch).backward()``. Build it after the model has
moved to its device and dtype (``to`` replaces the arrays the replicas share).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .. import backend
from ..errors import ArgumentError, ShapeError, TinygradNLPError
from .flat import FlatBuffer, flatten
from .module import Module


class DataParallel:
    """Replicas of ``model`` in ``threads`` threads (default: ``backend.default_threads``,
    one per core on the CPU, one on a GPU)."""

    def __init__(self, model: Module, threads: int | None = None):
        if threads is None:
            threads = backend.default_threads(model.device)
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ArgumentError(f"DataParallel: threads must be a positive integer, got {threads!r}")
        if threads > 1 and model.device != "cpu":
            raise ArgumentError(f"DataParallel: threads={threads} on {model.device}: a GPU runs one replica "
                                "(threads=1), each op already using all its cores")
        if threads > 1:
            backend.require_threadpoolctl()
        self.model, self.threads = model, int(threads)
        self.replicas = [model] + [model.replica() for _ in range(self.threads - 1)]
        self._buffers = flatten(model.parameters())  # what the replicas share: the model's values
        self._replica_buffers = [self._buffers] + [self._share(replica) for replica in self.replicas[1:]]
        self._modules = [list(replica.modules()) for replica in self.replicas]
        self._pool = ThreadPoolExecutor(self.threads - 1, "replica") if self.threads > 1 else None

    def _share(self, replica: Module) -> list[FlatBuffer]:
        mine = dict(zip((id(p) for p in self.model.parameters()), replica.parameters()))
        return [FlatBuffer([mine[id(p)] for p in buffer.params], data=buffer.data) for buffer in self._buffers]

    def backward(self, loss_of, *batch, count=None) -> float:
        """Run ``loss_of(replica, *rows)`` and its backward on each replica's contiguous
        share of the rows of the ``batch`` arrays, in parallel, and add the gradient of
        the batch's mean loss to the model's gradients. ``count(*rows)`` is how many
        items a replica's loss is the mean of (default: its rows). Returns the batch's
        mean loss, a float."""
        if not batch:
            raise ArgumentError("DataParallel.backward: got no batch arrays to share out")
        n = len(batch[0])
        if any(len(a) != n for a in batch):
            raise ShapeError(f"DataParallel.backward: the batch arrays have {[len(a) for a in batch]} rows; "
                             "they must have the same number")
        shares = [rows for rows in _shares(n, self.threads) if rows.stop > rows.start]
        parts = [[a[rows] for a in batch] for rows in shares]
        counts = [float(count(*part)) if count is not None else float(len(part[0])) for part in parts]
        total = sum(counts)
        if len(parts) < 2 or total == 0:
            loss = loss_of(self.model, *batch)
            loss.backward()
            return loss.item()
        for k in range(1, len(parts)):
            self._mirror_modes(k)
            for buffer in self._replica_buffers[k]:
                for p in buffer.params:
                    p.grad = None
        seeds = backend.rng(np).integers(2 ** 63, size=len(parts))
        jobs = [(self.replicas[k], loss_of, parts[k], counts[k] / total, seeds[k]) for k in range(len(parts))]
        with backend.one_blas_thread():
            futures = [self._pool.submit(_run_replica, *job) for job in jobs[1:]]
            try:
                losses = [_run_replica(*jobs[0])]
            except Exception as error:
                wait(futures)  # every thread done before anything is raised
                raise _located(error, 0, shares[0]) from error
            errors = [f.exception() for f in futures]
            for k, error in enumerate(errors, start=1):
                if error is not None:
                    raise _located(error, k, shares[k]) from error
            losses += [f.result() for f in futures]
        self._add_replica_gradients(len(parts))
        return sum(c * loss for c, loss in zip(counts, losses) if c) / total

    def _mirror_modes(self, k: int) -> None:
        for theirs, ours in zip(self._modules[k], self._modules[0]):
            theirs.training = ours.training

    def _add_replica_gradients(self, used: int) -> None:
        """The model's gradients += each other replica's (one pass per flat buffer when
        every parameter has a gradient on both sides)."""
        for i, buffer in enumerate(self._buffers):
            for k in range(1, used):
                theirs = self._replica_buffers[k][i]
                if buffer.has_all_gradients() and theirs.has_all_gradients():
                    mine = buffer.grad
                    mine += theirs.grad
                    continue
                for p, q in zip(buffer.params, theirs.params):
                    if q.grad is not None:
                        p._accumulate(q.grad, set())

    def close(self) -> None:
        """Stop the worker threads (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()

    def __repr__(self):
        return f"DataParallel({type(self.model).__name__}, threads={self.threads})"


def _shares(n: int, k: int) -> list[slice]:
    """``k`` contiguous parts of ``n`` rows, differing by at most one row."""
    base, extra = divmod(n, k)
    starts = [r * base + min(r, extra) for r in range(k + 1)]
    return [slice(starts[r], starts[r + 1]) for r in range(k)]


def _located(error: Exception, k: int, rows: slice) -> Exception:
    """The replica's error, of the same class, saying whose rows it came from (a
    position in the message counts from the replica's first row)."""
    if not isinstance(error, TinygradNLPError):
        return error
    return type(error)(f"{error} (replica {k}, rows {rows.start}..{rows.stop - 1} of the batch)")


def _run_replica(replica, loss_of, rows, weight, seed) -> float:
    """One replica's share of a step, on the calling thread: its loss, and a backward
    from ``weight`` (count / total) unless no item counts."""
    with backend.thread_generator(np.random.default_rng(seed)):
        loss = loss_of(replica, *rows)
        if weight:
            xp = backend.get_array_module(loss.data)
            loss.backward(xp.full(loss.shape, weight, dtype=loss.dtype))
        return loss.item()


__all__ = ["DataParallel"]
