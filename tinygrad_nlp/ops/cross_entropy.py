"""Cross-entropy: log-softmax and the negative log-likelihood of the targets as one op,
alone and with the linear layer before it (a language model's head and loss).
Faster ways to compute them are in kernels/cpu/softmax.py, kernels/cpu/lm_head.py and
kernels/cuda/softmax.py. Guide: docs/backward.md#log-softmax-and-cross-entropy
"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import check_ids
from .softmax import log_softmax_of

IGNORE_INDEX = -100  # a target that scores nothing (PyTorch's default ignore_index)


class CrossEntropy(Function):
    """L = -(1/n) sum over scored rows r of log softmax(x_r)[t_r], where a row is scored
    when its target is not ``ignore_index`` and n is the number of scored rows
    (PyTorch's ``reduction='mean'``). Logits (..., C), targets (...).

    For one scored row, L_r = logsumexp(x_r) - x_r[t_r], whose gradient is
    softmax(x_r) - onehot(t_r); with the mean, every scored row gets that divided by n
    and ignored rows get 0: dL/dx = (softmax(x) - onehot(t)) * scored * g / n.
    Saves: the log-probabilities (softmax = their exp), the scored mask and the targets.

    When every target is ignored, the loss is 0 and every gradient is 0 (PyTorch returns
    NaN there, from 0/0).
    """

    floating = True
    op_name = "cross_entropy"

    def __init__(self, targets, ignore_index=IGNORE_INDEX):
        self.targets, self.ignore_index = targets, int(ignore_index)

    def check(self, logits):
        get_array_module(logits, self.targets)
        if logits.ndim < 1 or tuple(logits.shape[:-1]) != tuple(self.targets.shape):
            raise ShapeError(
                f"cross_entropy: logits {tuple(logits.shape)} do not fit targets {tuple(self.targets.shape)} "
                "(expected logits (N, C) and targets (N,))"
            )
        self.check_targets(logits.shape[-1])

    def check_targets(self, num_classes):
        if num_classes == 0:
            raise ShapeError(f"{self.op_name}: logits have no classes (the last axis is empty)")
        check_ids(self.targets, num_classes, self.op_name, noun="target", of="{n} classes",
                  ignore_index=self.ignore_index)

    def forward(self, logits):
        xp = get_array_module(logits)
        log_probs = log_softmax_of(logits.reshape(-1, logits.shape[-1]))  # (N, C)
        targets = self.targets.reshape(-1)                                 # (N,)
        scored = targets != self.ignore_index                              # (N,)
        picked = xp.where(scored, targets, 0)                              # (N,), class 0 for an ignored row
        nll = -log_probs[xp.arange(targets.shape[0]), picked]              # (N,)
        self.logits_shape, self.count = logits.shape, int(scored.sum())
        self.save(log_probs=log_probs, scored=scored, picked=picked)
        return xp.where(scored, nll, 0).sum() / max(self.count, 1)         # the mean over scored rows

    def backward(self, g):
        xp = get_array_module(g)
        probs = xp.exp(self.log_probs)                                     # (N, C)
        onehot = xp.arange(probs.shape[1]) == self.picked[:, None]         # (N, C)
        row_weight = self.scored[:, None] * (g / max(self.count, 1))        # (N, 1): g/n, or 0 if ignored
        return ((probs - onehot) * row_weight).reshape(self.logits_shape)


class LinearCrossEntropy(CrossEntropy):
    """cross_entropy(x W^T + b, targets): the language-model head and its loss as one op,
    with the head applied only to the scored rows.

    Only the scored rows S (n of them) enter; for those, with X = x_S W^T + b,
        L = (1/n) sum_r (lse_r - X[r, t_r]),   lse_r = log sum_j exp X[r, j],
        dL/dX = (g/n) (P - onehot(t)),  P = exp(X - lse),
        dL/dx_r = dL/dX_r W,  dL/dW = dL/dX^T x_S,  dL/db = column sums of dL/dX.
    Rows outside S get zero gradient. Saves: x_S, W and P, the (n, C) probabilities.
    """

    op_name = "linear_cross_entropy"

    def check(self, x, weight, bias=None):
        get_array_module(x, weight, bias, self.targets)
        if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
            raise ShapeError(
                f"linear_cross_entropy: input {tuple(x.shape)} does not fit weight {tuple(weight.shape)} "
                "(expected input (N, in) and weight (classes, in))"
            )
        if tuple(self.targets.shape) != (x.shape[0],):
            raise ShapeError(
                f"linear_cross_entropy: targets {tuple(self.targets.shape)} do not fit input {tuple(x.shape)} "
                "(expected targets (N,))"
            )
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ShapeError(f"linear_cross_entropy: bias shape {tuple(bias.shape)} does not fit weight "
                             f"{tuple(weight.shape)}")
        self.check_targets(weight.shape[0])

    def forward(self, x, weight, bias=None):
        xp = get_array_module(x, weight)
        scored_rows = xp.flatnonzero(self.targets != self.ignore_index)  # (n,)
        rows, targets = x[scored_rows], self.targets[scored_rows]       # (n, in), (n,)
        logits = rows @ weight.T                                         # (n, C)
        if bias is not None:
            logits = logits + bias
        log_probs = log_softmax_of(logits)                               # (n, C)
        nll = -log_probs[xp.arange(targets.shape[0]), targets]           # (n,)
        self.x_shape, self.has_bias = x.shape, bias is not None
        self.save(rows=rows, weight=weight, probs=xp.exp(log_probs), scored_rows=scored_rows, scored_targets=targets)
        return nll.sum() / max(targets.shape[0], 1)

    def backward(self, g):
        xp = get_array_module(g)
        n, classes = self.probs.shape
        onehot = xp.arange(classes) == self.scored_targets[:, None]      # (n, C)
        grad_logits = (self.probs - onehot) * (g / max(n, 1))            # (n, C): dL/dX
        grad_x = xp.zeros(self.x_shape, dtype=grad_logits.dtype)        # (N, in): 0 outside S
        grad_x[self.scored_rows] = grad_logits @ self.weight             # the scored rows: dL/dX W
        grad_weight = grad_logits.T @ self.rows                          # (C, in)
        grad_bias = grad_logits.sum(axis=0)                              # (C,)
        return (grad_x, grad_weight) + ((grad_bias,) if self.has_bias else ())


def cross_entropy(logits, targets, ignore_index=IGNORE_INDEX):
    """Mean negative log-likelihood of integer ``targets`` (N,) under ``logits`` (N, C),
    over the targets that are not ``ignore_index`` (0 when all are ignored)."""
    return CrossEntropy(array_of(targets), ignore_index)(logits)


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=IGNORE_INDEX):
    """``cross_entropy(linear(x, weight, bias), targets)`` as one op: x (N, in), weight
    (C, in), targets (N,). Same value and gradients, with the head computed only on the
    scored rows (for a language-model head over a large vocabulary)."""
    return LinearCrossEntropy(array_of(targets), ignore_index)(x, weight, bias)
