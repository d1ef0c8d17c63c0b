"""softmax, log_softmax and the fused log-softmax + negative log-likelihood
(cross-entropy). All subtract the row maximum first, so logits of +-1e4 stay finite.
Guide: docs/backward.md#softmax and docs/backward.md#log-softmax-and-cross-entropy
"""
from __future__ import annotations

from .. import backend
from ..backend import get_array_module
from ..errors import ShapeError, TokenIdError
from ..tensor import Function
from .rowwise import row_max, row_sum


def _check_axis(x, axis, op):
    if not -x.ndim <= axis < x.ndim or x.shape[axis] == 0:
        raise ShapeError(f"{op}: axis {axis} is out of range or empty for input {tuple(x.shape)}")


def _check_classes(logits, op):
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ShapeError(f"{op}: logits {tuple(logits.shape)} have no classes (the last axis is empty)")


def _is_last(x, axis) -> bool:
    return axis == -1 or axis == x.ndim - 1


def _max(x, axis):
    return row_max(x) if _is_last(x, axis) else x.max(axis=axis, keepdims=True)


def _sum(x, axis):
    return row_sum(x) if _is_last(x, axis) else x.sum(axis=axis, keepdims=True)


# Blocks of rows of this many bytes stay in the L2 cache while max, subtract, exp and
# sum run over them: on the MLM head's (384, 40000) logits, memory is read once instead
# of four times (33 ms -> 15 ms on the 2-core benchmark machine).
_BLOCK_BYTES = 1 << 18


def _exp_rows(x, out=None):
    """For a 2-D x: exp(x - row max) (into ``out``, which may be x), the row maxima
    (N, 1) and the row sums of the exponentials (N,)."""
    xp = get_array_module(x)
    n, c = x.shape
    if out is None:
        out = xp.empty_like(x)
    if xp.__name__ != "numpy" or not out.flags.c_contiguous:
        e, shift = _stable_exp(x, -1, out=out)
        return e, shift, row_sum(e, keepdims=False)
    shift = xp.empty((n, 1), dtype=x.dtype)
    total = xp.empty(n, dtype=x.dtype)
    ones = xp.ones(c, dtype=x.dtype)
    step = max(1, _BLOCK_BYTES // max(1, c * x.itemsize))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        block = out[rows]
        xp.max(x[rows], axis=1, keepdims=True, out=shift[rows])
        xp.subtract(x[rows], shift[rows], out=block)
        xp.exp(block, out=block)
        xp.matmul(block, ones, out=total[rows])
    return out, shift, total


def _stable_exp(x, axis, out=None):
    """exp(x - max(x)) and the max, along ``axis``; into ``out`` (which may be x)."""
    xp = get_array_module(x)
    shift = _max(x, axis)
    e = xp.subtract(x, shift, out=out)
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
        _check_axis(x, self.axis, "softmax")
        e, _ = _stable_exp(x, self.axis)
        e /= _sum(e, self.axis)
        self.y = e
        return e

    def backward(self, g):
        y = self.y
        return y * (g - _sum(g * y, self.axis))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``.

    dy_i/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax(x) * sum(g), with
    softmax(x) = exp(y) recomputed from the saved output.
    """

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        _check_axis(x, self.axis, "log_softmax")
        e, shift = _stable_exp(x, self.axis)
        self.y = x - (shift + xp.log(_sum(e, self.axis)))
        return self.y

    def backward(self, g):
        xp = get_array_module(g)
        return g - xp.exp(self.y) * _sum(g, self.axis)


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
    and ignored rows get 0. The forward saves the softmax probabilities only, and the
    last backward turns them into the gradient in place.

    When every target is ignored, the loss is 0 and every gradient is 0 (PyTorch returns
    NaN there, from 0/0).
    """

    def __init__(self, targets, ignore_index=-100):
        self.targets, self.ignore_index = targets, int(ignore_index)

    def forward(self, logits):
        get_array_module(logits, self.targets)
        if logits.ndim < 1 or tuple(logits.shape[:-1]) != tuple(self.targets.shape):
            raise ShapeError(
                f"cross_entropy: logits {tuple(logits.shape)} do not fit targets {tuple(self.targets.shape)} "
                "(expected logits (N, C) and targets (N,))"
            )
        _check_classes(logits, "cross_entropy")
        self.logits_shape = logits.shape
        return self._softmax_nll(logits.reshape(-1, logits.shape[-1]), owned=False)

    def _softmax_nll(self, x, owned):
        """Mean NLL of the rows of x (N, C). Saves exp(x - max) (written over x if
        owned) and 1 / its row sums: the backward normalises and scales in one pass."""
        xp = get_array_module(x)
        check_targets(self.targets, x.shape[-1], self.ignore_index)
        t = self.targets.reshape(-1)
        self.scored = t != self.ignore_index
        self.safe_t = xp.where(self.scored, t, 0)
        self.count = int(self.scored.sum())
        target_logit = x[xp.arange(x.shape[0]), self.safe_t]
        e, shift, sum_e = _exp_rows(x, out=x if owned else None)
        # -log p_t = log(sum e) + shift - x_t: computed without forming log-probabilities
        nll = xp.log(sum_e) + shift[:, 0] - target_logit
        self.exp_shifted, self.inv_sum = e, 1 / sum_e
        loss = (nll * self.scored).sum() / max(self.count, 1)
        return xp.asarray(loss, dtype=x.dtype)

    def _logit_grad(self, g):
        """dL/dx (N, C) = (softmax - onehot) * scored * g / n, made from the saved
        exponentials (in place on the last use)."""
        xp = get_array_module(g)
        e = self.exp_shifted
        row_weight = (self.scored * (g / max(self.count, 1))).astype(e.dtype)
        grad = xp.multiply(e, (row_weight * self.inv_sum)[:, None], out=e if self.last_use else None)
        grad[xp.arange(e.shape[0]), self.safe_t] -= row_weight
        return grad

    def backward(self, g):
        return self._logit_grad(g).reshape(self.logits_shape)


class LinearCrossEntropy(CrossEntropy):
    """cross_entropy(x W^T + b, targets): the language-model head and its loss as one op.

    Same value and gradients as ``linear`` followed by ``cross_entropy``, with the
    (N, C) logits computed into a buffer this op owns, so softmax runs in place on them
    and the backward writes dL/dlogits (G) over the same buffer: one (N, C) array
    instead of three. Then, as for ``linear``: dL/dx = G W, dL/dW = G^T x,
    dL/db = sum of G over rows.
    """

    def forward(self, x, weight, bias=None):
        xp = get_array_module(x, weight, bias, self.targets)
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
        _check_classes(weight.T, "linear_cross_entropy")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ShapeError(f"linear_cross_entropy: bias shape {tuple(bias.shape)} does not fit weight "
                             f"{tuple(weight.shape)}")
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        logits = backend.take_buffer(xp, (x.shape[0], weight.shape[0]), xp.result_type(x, weight))
        xp.matmul(x, weight.T, out=logits)
        if bias is not None:
            logits += bias
        return self._softmax_nll(logits, owned=True)

    def backward(self, g):
        grad_logits = self._logit_grad(g)
        grads = (grad_logits @ self.weight, grad_logits.T @ self.x)
        if self.has_bias:
            grads += (row_sum(grad_logits.T, keepdims=False),)
        if self.last_use:
            self._give_back()
        return grads

    def _give_back(self):
        buffer = self.__dict__.pop("exp_shifted", None)
        if buffer is not None:
            backend.give_back_buffer(buffer)

    def __del__(self):  # a forward without a backward (no_grad, retain_graph) ends here
        self._give_back()
