"""Thread replicas of a model, whose gradients add up into the model's in replica order.

``nn.DataParallel`` runs one replica per thread, each on its share of the rows. Replica
k is a copy of the model (``Module.replica``) whose parameters are ``ReplicaParameter``s:
each holds its model parameter's array (the weights are one), and a hook on it
(``Tensor.register_post_accumulate_grad_hook``) takes every gradient its backward
accumulates and hands it to ``InReplicaOrder``. That adds it into the model parameter's
gradient (``Tensor.accumulate_grad``, so the flat buffer's slot receives it) after
replicas 0..k-1 have added theirs, whichever thread completes the turn: the same
floating-point sum on every run, and no replica keeps a gradient array of its own.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from .module import Module, Parameter


class ReplicaParameter(Parameter):
    """A replica's copy of the model's Parameter ``original``: its ``data`` is always the
    original's array, also after the original has moved into a flat buffer or had a
    checkpoint loaded into it; it cannot be given another."""

    def __init__(self, original: Parameter):
        self.original = original
        super().__init__(original.data, original.requires_grad)

    @property
    def data(self):
        return self.original.data

    @data.setter
    def data(self, array):
        if array is not self.original.data:
            raise AttributeError("a replica's parameter holds its model parameter's array: set that one's")


class InReplicaOrder:
    """Each model parameter's gradients from the replicas, added in replica order:
    replica k's once replicas 0..k-1 have added theirs or finished. One that comes before
    its turn waits in ``pending`` and whoever completes the turn ahead of it adds it, so
    no thread ever blocks."""

    def __init__(self, originals):
        self.originals = list(originals)
        self.lock = threading.Lock()
        self.added_by = self.finished = None
        self.pending = [{} for _ in self.originals]  # per parameter: {replica: gradient}

    def start(self, replicas: int, running: int) -> None:
        """A backward of ``replicas`` replicas begins, the first ``running`` of them with rows."""
        self.added_by = np.zeros((replicas, len(self.originals)), dtype=bool)
        self.finished = np.arange(replicas) >= running  # replicas without rows this step count as done

    def receive(self, k: int, i: int, replica_parameter: Parameter) -> None:
        """The hook on replica k's parameter i: its gradient is taken from it and added
        into the model's parameter i in its turn."""
        grad, replica_parameter.grad = replica_parameter.grad, None
        with self.lock:
            if self._turn(i) != k:
                self.pending[i][k] = grad
                return
        self._add_from(k, i, grad)

    def finish(self, k: int) -> None:
        """Replica k is done: the pending gradients whose turn that makes are added."""
        with self.lock:
            self.finished[k] = True
            ready = []
            for i, waiting in enumerate(self.pending):
                turn = self._turn(i) if waiting else None
                if turn in waiting:
                    ready.append((turn, i, waiting.pop(turn)))
        for turn, i, grad in ready:
            self._add_from(turn, i, grad)

    def _turn(self, i: int):
        """The first replica whose gradient for parameter i may still come or is
        pending: one that has neither added it nor finished without it."""
        for k in range(len(self.finished)):
            if not self.added_by[k, i] and (not self.finished[k] or k in self.pending[i]):
                return k
        return None

    def _add_from(self, k: int, i: int, grad) -> None:
        """Add replica k's gradient to parameter i (its turn), then any pending ones
        whose turn that makes."""
        while True:
            self.originals[i].accumulate_grad(grad)
            with self.lock:
                self.added_by[k, i] = True
                k = self._turn(i)
                if k not in self.pending[i]:
                    return
                grad = self.pending[i].pop(k)


def thread_replicas(module: Module, count: int) -> tuple[list[Module], InReplicaOrder]:
    """``count`` replicas of ``module`` and the ``InReplicaOrder`` their gradients go
    through into the module's."""
    originals = module.parameters()
    order = InReplicaOrder(originals)
    index = {id(p): i for i, p in enumerate(originals)}

    def replica(k):
        def make_parameter(p):
            copy = ReplicaParameter(p)
            copy.register_post_accumulate_grad_hook(functools.partial(order.receive, k, index[id(p)]))
            return copy
        return module.replica(make_parameter)
    return [replica(k) for k in range(count)], order


__all__ = ["ReplicaParameter", "InReplicaOrder", "thread_replicas"]
