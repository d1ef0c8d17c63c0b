"""softmax, log_softmax and the fused log-softmax + negative log-likelihood
(cross-entropy). All subtract the row maximum first, so logits of +-1e4 stay finite.
Guide: docs/backward.md#softmax and docs/backward.md#log-softmax-and-cross-entropy
"""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ShapeError, TokenIdError
from ..tensor import Function


def _stable_exp(x, axis):
    """exp(x - max(x)) and the max, along ``axis``."""
    xp = get_array_module(x)
    shift = x.max(axis=axis, keepdims=True)
    e = x - shift
    return xp.exp(e, out=e), shift


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along ``axis``.

    The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so the vector-Jacobian product is
    dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i):
    ``y * (g - sum(g * y))``. Only y is saved.
    """

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        e, _ = _stable_exp(x, self.axis)
        e /= e.sum(axis=self.axis, keepdims=True)
        self.y = e
        return e

    def backward(self, g):
        y = self.y
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``.

    dy_i/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax(x) * sum(g), with
    softmax(x) = exp(y) recomputed from the saved output.
    """

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        e, shift = _stable_exp(x, self.axis)
        self.y = x - shift - xp.log(e.sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, g):
        xp = get_array_module(g)
        return g - xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


def check_targets(targets, num_classes: int, ignore_index: int) -> None:
    xp = get_array_module(targets)
    if not xp.issubdtype(targets.dtype, xp.integer):
        raise TokenIdError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    bad = ((targets < 0) | (targets >= num_classes)) & (targets != ignore_index)
    if targets.size and bool(bad.any()):
        position = tuple(int(i) for i in xp.argwhere(bad)[0])
        raise TokenIdError(
            f"cross_entropy: target {int(targets[position])} at position {position} is out of range for "
            f"{num_classes} classes (and is not ignore_index={ignore_index})"
        )


class CrossEntropy(Function):
    """L = -(1/n) sum over scored rows r of log softmax(x_r)[t_r], where a row is scored
    when its target is not ``ignore_index`` and n is the number of scored rows
    (PyTorch's ``reduction='mean'``). Logits (..., C), targets (...).

    For one scored row, L_r = logsumexp(x_r) - x_r[t_r], whose gradient is
    softmax(x_r) - onehot(t_r); with the mean, every scored row gets that divided by n
    and ignored rows get 0. The forward saves the softmax probabilities only.

    When every target is ignored, the loss is 0 and every gradient is 0 (PyTorch returns
    NaN there, from 0/0).
    """

    def __init__(self, targets, ignore_index=-100):
        self.targets, self.ignore_index = targets, int(ignore_index)

    def forward(self, logits):
        xp = get_array_module(logits, self.targets)
        if logits.ndim < 1 or tuple(logits.shape[:-1]) != tuple(self.targets.shape):
            raise ShapeError(
                f"cross_entropy: logits {tuple(logits.shape)} do not fit targets {tuple(self.targets.shape)} "
                "(expected logits (N, C) and targets (N,))"
            )
        C = logits.shape[-1]
        check_targets(self.targets, C, self.ignore_index)
        x = logits.reshape(-1, C)
        t = self.targets.reshape(-1)
        self.logits_shape = logits.shape
        self.scored = t != self.ignore_index
        self.safe_t = xp.where(self.scored, t, 0)
        self.count = int(self.scored.sum())
        e, shift = _stable_exp(x, -1)
        sum_e = e.sum(axis=-1, keepdims=True)
        rows = xp.arange(x.shape[0])
        # -log p_t = log(sum e) - (x_t - shift): computed without forming log-probabilities
        nll = xp.log(sum_e[:, 0]) - (x[rows, self.safe_t] - shift[:, 0])
        e /= sum_e
        self.probs = e
        loss = (nll * self.scored).sum() / max(self.count, 1)
        return xp.asarray(loss, dtype=logits.dtype)

    def backward(self, g):
        xp = get_array_module(g)
        rows = xp.arange(self.probs.shape[0])
        scale = (g / max(self.count, 1)).astype(self.probs.dtype)
        grad = self.probs * (self.scored[:, None] * scale)
        grad[rows, self.safe_t] -= self.scored * scale
        return grad.reshape(self.logits_shape)
