"""Data parallelism over one machine's CPU cores: a replica of the model per thread,
each taking its share of every batch.

NumPy runs an elementwise pass (softmax, layer norm, dropout, an activation) on one
core, and those passes are about half of a Transformer's training step, so on a CPU
with two or more cores a step leaves the others idle for half its time. Here each
thread runs the whole forward, loss and backward on its own rows of the batch with its
own replica, and each multiplies with a BLAS of one thread; every core is busy all
step. The arithmetic is that of ``distributed.py``'s ranks, in one process:

- A replica (``Module.replica``) holds the model's arrays in Parameters of its own, so
  it computes with the model's current weights and the optimizer's in-place update
  reaches every replica. Its Parameters send each gradient straight into the model's
  Parameter (``SharedGradient``): no gradient buffer per replica, no summing pass.
- Contributions to one parameter are added in replica order, replica k's after those
  of replicas 0..k-1 (or their finishing without one), so the sum is the same
  floating-point sum every run. One that comes early is held and added by the replica
  that completes the turn before it: no thread waits for another.
- ``loss_of(replica, *rows)`` is a mean over ``count(*rows)`` items (scored tokens,
  examples). Each replica's backward starts from count / total instead of 1, so the
  contributions add up to the gradient of the mean over the whole batch, accumulated
  into the model's gradients as ``loss.backward()`` would.
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

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .. import backend
from ..errors import ArgumentError, ShapeError, TinygradNLPError
from .module import Module, Parameter


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
        self._turns = _Turns(model.parameters())
        self.replicas = [model] if self.threads == 1 else [self._replica(k) for k in range(self.threads)]
        self._modules = [list(replica.modules()) for replica in self.replicas]
        self._pool = ThreadPoolExecutor(self.threads - 1, "replica") if self.threads > 1 else None

    def _replica(self, k: int) -> Module:
        index = {id(p): i for i, p in enumerate(self._turns.originals)}
        return self.model.replica(lambda p: SharedGradient(p, k, index[id(p)], self._turns))

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
        for replica_modules in self._modules:
            for theirs, ours in zip(replica_modules, self.model.modules()):
                theirs.training = ours.training
        self._turns.start(self.threads, len(parts))
        seeds = backend.rng(np).integers(2 ** 63, size=len(parts))
        jobs = [(k, self.replicas[k], loss_of, parts[k], counts[k] / total, seeds[k], self._turns)
                for k in range(len(parts))]
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
        return sum(c * loss for c, loss in zip(counts, losses) if c) / total

    def close(self) -> None:
        """Stop the worker threads (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()

    def __repr__(self):
        return f"DataParallel({type(self.model).__name__}, threads={self.threads})"


class SharedGradient(Parameter):
    """Replica ``k``'s copy of the model's Parameter ``original`` (the same array): its
    gradient is added to ``original``'s after replicas 0..k-1 have added theirs."""

    def __init__(self, original: Parameter, k: int, index: int, turns: _Turns):
        # not Tensor.__init__: the array is always the original's (``data`` below), even
        # after an optimizer or a checkpoint load has put the original's in a flat buffer
        self.grad, self.requires_grad, self.creator = None, original.requires_grad, None
        self.original, self.k, self.index, self.turns = original, k, index, turns

    @property
    def data(self):
        return self.original.data

    def _accumulate(self, g, assigned: set) -> None:
        self.turns.contribute(self.k, self.index, g, assigned)


class _Turns:
    """Each parameter's gradients from the replicas, added in replica order: replica k's
    once replicas 0..k-1 have added theirs or finished. One that comes before its turn
    waits in ``pending`` and whoever completes the turn ahead of it adds it, so no thread
    ever blocks."""

    def __init__(self, originals):
        self.originals = originals
        self.lock = threading.Lock()
        self.added_by = self.finished = None
        self.pending = [{} for _ in originals]  # per parameter: {replica: (gradient, its walk's `assigned`)}

    def start(self, replicas: int, running: int) -> None:
        self.added_by = np.zeros((replicas, len(self.originals)), dtype=bool)
        self.finished = np.arange(replicas) >= running  # replicas without rows this step count as done

    def _turn(self, i: int):
        """The first replica whose gradient for parameter i may still come or is
        pending: one that has neither added it nor finished without it."""
        for k in range(len(self.finished)):
            if not self.added_by[k, i] and (not self.finished[k] or k in self.pending[i]):
                return k
        return None

    def contribute(self, k: int, i: int, g, assigned: set) -> None:
        with self.lock:
            if self._turn(i) != k:
                self.pending[i][k] = (g, assigned)
                return
        self._add_from(k, i, g, assigned)

    def _add_from(self, k: int, i: int, g, assigned: set) -> None:
        """Add replica k's gradient to parameter i (its turn), then any pending ones
        whose turn that makes."""
        while True:
            self.originals[i]._accumulate(g, assigned)
            with self.lock:
                self.added_by[k, i] = True
                k = self._turn(i)
                if k not in self.pending[i]:
                    return
                g, assigned = self.pending[i].pop(k)

    def finish(self, k: int) -> None:
        """Replica k is done: the pending gradients whose turn that makes are added."""
        with self.lock:
            self.finished[k] = True
            ready = []
            for i, waiting in enumerate(self.pending):
                turn = self._turn(i) if waiting else None
                if turn in waiting:
                    ready.append((turn, i) + waiting.pop(turn))
        for turn, i, g, assigned in ready:
            self._add_from(turn, i, g, assigned)


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


def _run_replica(k, replica, loss_of, rows, weight, seed, turns) -> float:
    """Replica ``k``'s share of a step, on the calling thread: its loss, and a backward
    from ``weight`` (count / total) unless no item counts; done, whatever happens, so
    that no other replica waits for it."""
    try:
        with backend.thread_generator(np.random.default_rng(seed)):
            loss = loss_of(replica, *rows)
            if weight:
                xp = backend.get_array_module(loss.data)
                loss.backward(xp.full(loss.shape, weight, dtype=loss.dtype))
            return loss.item()
    finally:
        turns.finish(k)


__all__ = ["DataParallel", "SharedGradient"]
