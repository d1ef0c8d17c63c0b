"""softmax, log_softmax, and cross-entropy (fused log-softmax + negative log-likelihood),
alone and fused with the linear layer before it. All subtract a shift at least the row
maximum first, so logits of +-1e4 stay finite.

``exp_rows`` / ``softmax_rows`` / ``softmax_backward`` are the one forward/backward pair
of row softmax; attention uses them too. ``exp_rows`` and ``softmax_backward`` each have
a generic path and a fused kernel (ops/softmax.cu, one launch for every row);
``backend.kernels.dispatch`` chooses.
Guide: docs/backward.md#softmax and docs/backward.md#log-softmax-and-cross-entropy
"""
from __future__ import annotations

import math
import pathlib

import numpy as np

from ..backend import get_array_module, kernels, per_device, rows_per_block
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import check_ids
from ..kernels.cpu.rowwise import row_max, row_sum

IGNORE_INDEX = -100  # a target that scores nothing (PyTorch's default ignore_index)


# -- row softmax, written once ---------------------------------------------------------
def _row_buffers(x, out):
    """x (contiguous), out, both as (n, C) rows, and the (n, 1) shift and total buffers."""
    xp = get_array_module(x)
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)
    width = x.shape[-1]
    n = math.prod(x.shape[:-1])
    shift, total = xp.empty((n, 1), dtype=x.dtype), xp.empty((n, 1), dtype=x.dtype)
    return xp, x.reshape(n, width), out, out.reshape(n, width), shift, total


def _exp_rows_generic(x, out=None, masked_rows=False):
    """For x (..., C): exp(x - shift) (into ``out``, which may be x), the shifts and the
    row sums of the exponentials (both (..., 1)). The shift of a row is a number at
    least its maximum, so every exponential is at most 1: the row maximum itself, or
    on the CPU the maximum of a whole block of rows (below).

    Rows go through in blocks that stay in the CPU's cache while max, subtract, exp and
    sum run over them, so memory is read once instead of four times (rows wider than
    the cache go through all at once). With
    ``masked_rows``, a row that is all -inf (a query whose keys are all masked) has its
    shift taken as 0, so its exponentials are 0 instead of NaN.
    """
    lead = tuple(x.shape[:-1]) + (1,)
    xp, rows_in, out, rows_out, shift, total = _row_buffers(x, out)
    n, width = rows_in.shape
    step = rows_per_block(xp, n, width * x.itemsize)
    # rows that fit a block several times share one shift per block (exp_block)
    exp_of_block = exp_block if step > 1 else _exp_by_row_max
    if step == 1:  # a row wider than the cache gains nothing from blocks: one pass each
        step = n
    for start in range(0, n, step):
        rows = slice(start, start + step)
        shift[rows], total[rows] = exp_of_block(rows_in[rows], rows_out[rows], masked_rows)
    return out, shift.reshape(lead), total.reshape(lead)


def _exp_rows_kernel(x, out=None, masked_rows=False):
    """``exp_rows`` in one launch for every row (ops/softmax.cu), each row shifted by its
    own maximum."""
    lead = tuple(x.shape[:-1]) + (1,)
    xp, rows_in, out, rows_out, shift, total = _row_buffers(x, out)
    kernels.launch_per_row(KERNEL_SOURCE, "exp_rows", rows_in,
                           (rows_in, np.int64(rows_in.shape[1]), np.int32(masked_rows), rows_out, shift, total))
    return out, shift.reshape(lead), total.reshape(lead)


exp_rows = kernels.dispatch("softmax", generic=_exp_rows_generic, kernel=_exp_rows_kernel,
                            applies=lambda x, *_, **__: x.size > 0)


def _exp_by_row_max(x, out, masked_rows):
    """exp(x - row max) into ``out`` for a 2-D block; its row maxima and row sums."""
    xp = get_array_module(x)
    shift = row_max(x)
    if masked_rows:
        shift[~xp.isfinite(shift)] = 0
    xp.subtract(x, shift, out=out)
    xp.exp(out, out=out)
    return shift, row_sum(out)


def _exp_by_block_max_cpu(x, out, masked_rows):
    """exp(x - m) with m the maximum of the whole block, one number: NumPy reduces a
    block to one number several times faster than each of its rows to one (attention's
    scores, ``python benchmarks/ops.py``), and subtracting a scalar is a
    plainer loop than subtracting a column. Softmax is the same for any shift; what
    changes is only where the exponentials of a row stop being normal floats. A row
    whose exponentials sum to less than ``_SMALLEST_SHARED_TOTAL`` (its maximum far
    below the block's, or all -inf) is made again with its own maximum, so every
    exponential within about (3/4 of the exponent range - log C) of its row's maximum
    keeps full precision: 55 in float32 (e^-55 ~ 1e-24 of the row's largest), 520 in
    float64."""
    top = x.max()
    if not np.isfinite(top):  # all -inf, or inf/NaN inside: the exact path says what they give
        return _exp_by_row_max(x, out, masked_rows)
    if np.may_share_memory(x, out):  # in place: keep x (a cache-sized block) for rows made again
        x = x.copy()
    np.subtract(x, top, out=out)
    np.exp(out, out=out)
    total = row_sum(out)
    shift = np.full(total.shape, top, dtype=x.dtype)
    low = np.flatnonzero(total[:, 0] < _SMALLEST_SHARED_TOTAL[x.dtype.char])
    if low.size:
        again = np.empty((low.size, x.shape[1]), dtype=x.dtype)
        shift[low], total[low] = _exp_by_row_max(x[low], again, masked_rows)
        out[low] = again
    return shift, total


_SMALLEST_SHARED_TOTAL = {char: np.finfo(char).tiny ** 0.25 for char in "efd"}  # e^-22 in float32
exp_block = per_device(cpu=_exp_by_block_max_cpu, cuda=_exp_by_row_max)
exp_block.__doc__ = "exp(x - shift) of a 2-D block into ``out``; the (rows, 1) shifts and row sums."


def softmax_rows(x, out=None, masked_rows=False):
    """softmax over the last axis (into ``out``, which may be x). With ``masked_rows``,
    an all -inf row gives all zeros."""
    e, _, total = exp_rows(x, out=out, masked_rows=masked_rows)
    if masked_rows:
        total[total == 0] = 1
    e /= total
    return e


def _softmax_backward_generic(y, g, out=None):
    """The VJP of y = softmax(x) over the last axis: y * (g - sum(g * y)) (into ``out``,
    which may be g)."""
    xp = get_array_module(y, g)
    grad = xp.subtract(g, row_sum(g * y), out=out)
    grad *= y
    return grad


def _softmax_backward_kernel(y, g, out=None):
    """``softmax_backward`` in one launch for every row (ops/softmax.cu)."""
    grad = g if out is g else get_array_module(g).empty_like(g)
    kernels.launch_per_row(KERNEL_SOURCE, "softmax_backward", y, (y, g, np.int64(y.shape[-1]), grad))
    return grad


softmax_backward = kernels.dispatch(
    "softmax", generic=_softmax_backward_generic, kernel=_softmax_backward_kernel,
    applies=lambda y, g, out=None: y.size > 0 and y.shape == g.shape and y.flags.c_contiguous
    and g.flags.c_contiguous and (out is None or out is g))


def _check_axis(op, x, axis):
    """A 0-d input is one row of one element along axis 0 or -1 (as PyTorch takes it)."""
    ndim = max(x.ndim, 1)
    if not -ndim <= axis < ndim or (x.ndim and x.shape[axis] == 0):
        raise ShapeError(f"{op}: axis {axis} is out of range or empty for input {tuple(x.shape)}")


def _to_last(xp, a, axis):
    """``a`` with ``axis`` moved last (a 0-d array as one element)."""
    return a.reshape(1) if a.ndim == 0 else xp.moveaxis(a, axis, -1)


def _from_last(xp, a, axis, shape):
    """The inverse of ``_to_last`` for an input of ``shape``."""
    return a.reshape(shape) if len(shape) == 0 else xp.moveaxis(a, -1, axis)


class Softmax(Function):
    """y = exp(x) / sum(exp(x)) along ``axis``.

    The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so the vector-Jacobian product is
    dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i):
    ``y * (g - sum(g * y))``. Only y is saved.
    """

    floating = True

    def __init__(self, axis=-1):
        self.axis = axis

    def check(self, x):
        _check_axis("softmax", x, self.axis)

    def forward(self, x):
        xp = get_array_module(x)
        y = _from_last(xp, softmax_rows(_to_last(xp, x, self.axis)), self.axis, x.shape)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g_rows = _to_last(xp, self.y, self.axis), _to_last(xp, g, self.axis)
        return _from_last(xp, softmax_backward(y, g_rows), self.axis, g.shape)


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``.

    dy_i/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax(x) * sum(g), with
    softmax(x) = exp(y) recomputed from the saved output.
    """

    floating = True

    def __init__(self, axis=-1):
        self.axis = axis

    def check(self, x):
        _check_axis("log_softmax", x, self.axis)

    def forward(self, x):
        xp = get_array_module(x)
        rows = _to_last(xp, x, self.axis)
        _, shift, total = exp_rows(rows)
        y = _from_last(xp, rows - (shift + xp.log(total)), self.axis, x.shape)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g_rows = _to_last(xp, self.y, self.axis), _to_last(xp, g, self.axis)
        return _from_last(xp, g_rows - xp.exp(y) * row_sum(g_rows), self.axis, g.shape)


class CrossEntropy(Function):
    """L = -(1/n) sum over scored rows r of log softmax(x_r)[t_r], where a row is scored
    when its target is not ``ignore_index`` and n is the number of scored rows
    (PyTorch's ``reduction='mean'``). Logits (..., C), targets (...).

    For one scored row, L_r = logsumexp(x_r) - x_r[t_r], whose gradient is
    softmax(x_r) - onehot(t_r); with the mean, every scored row gets that divided by n
    and ignored rows get 0. The forward saves exp(x - max) and 1 / its row sums, and
    the last backward turns them into the gradient in place.

    When every target is ignored, the loss is 0 and every gradient is 0 (PyTorch returns
    NaN there, from 0/0).
    """

    floating = True

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

    op_name = "cross_entropy"

    def forward(self, logits):
        """Saves exp(x - row max) of the (N, C) rows and 1 / their row sums."""
        xp = get_array_module(logits)
        self.logits_shape = logits.shape
        x, targets = logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1)
        scored = targets != self.ignore_index
        safe_targets = xp.where(scored, targets, 0)
        self.count = int(scored.sum())
        target_logit = x[xp.arange(x.shape[0]), safe_targets]
        e, shift, total = exp_rows(x)
        # -log p_t = log(sum e) + shift - x_t: computed without forming log-probabilities
        nll = xp.log(total[:, 0]) + shift[:, 0] - target_logit
        self.save(exp_shifted=e, inv_total=1 / total[:, 0], scored=scored, safe_targets=safe_targets)
        return xp.asarray((nll * scored).sum() / max(self.count, 1), dtype=x.dtype)

    def backward(self, g):
        """dL/dx = (softmax - onehot) * scored * g / n, made from the saved exponentials
        (written over them on the last backward)."""
        xp = get_array_module(g)
        e = self.exp_shifted
        row_weight = (self.scored * (g / max(self.count, 1))).astype(e.dtype)
        grad = xp.multiply(e, (row_weight * self.inv_total)[:, None], out=e if self.may_overwrite_saved else None)
        grad[xp.arange(e.shape[0]), self.safe_targets] -= row_weight
        return grad.reshape(self.logits_shape)


def logit_row_blocks(xp, n_rows, n_classes, itemsize):
    """Row ranges of the (n_rows, n_classes) logits to make at a time: on the CPU equal
    blocks of at most about ``LOGITS_BLOCK_BYTES`` (at least one row each), on the GPU
    one block."""
    most = rows_per_block(xp, n_rows, n_classes * itemsize, LOGITS_BLOCK_BYTES)
    size = -(-n_rows // -(-n_rows // most))  # as many blocks as needed, equally full
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def add_transposed_product(out, a, b, first=False):
    """out (C, d) += a^T b for a (R, C) and b (R, d) (``first``: out = a^T b), a range of
    out's rows at a time: on the CPU ranges of about ``PRODUCT_BLOCK_BYTES``, each
    product added while it is in the cache, with no (C, d) temporary; on the GPU one."""
    xp = get_array_module(out, a, b)
    step = rows_per_block(xp, out.shape[0], out.shape[1] * out.itemsize, PRODUCT_BLOCK_BYTES)
    scratch = None if first else xp.empty((min(step, out.shape[0]), out.shape[1]), dtype=out.dtype)
    for start in range(0, out.shape[0], step):
        span = slice(start, min(start + step, out.shape[0]))
        if first:
            xp.matmul(a[:, span].T, b, out=out[span])
        else:
            product = scratch[: span.stop - start]
            xp.matmul(a[:, span].T, b, out=product)
            out[span] += product


KERNEL_SOURCE = pathlib.Path(__file__).parents[1] / "kernels" / "cuda" / "softmax.cu"
LOGITS_BLOCK_BYTES = 1 << 24
PRODUCT_BLOCK_BYTES = 1 << 20


class LinearCrossEntropy(CrossEntropy):
    """cross_entropy(x W^T + b, targets): the language-model head and its loss as one op,
    computed a block of rows at a time, so that the (scored rows x C) logits never
    exist in memory at once, and differentiated on the way.

    Only the scored rows S (n of them) enter; for those, with X = x W^T + b,
        L = (1/n) sum_r (lse_r - X[r, t_r]),   lse_r = log sum_j exp X[r, j],
        dL/dX = (g/n) (P - onehot(t)),  P = exp(X - lse),
        dL/dx_r = dL/dX_r W,  dL/dW = dL/dX^T x_S,  dL/db = column sums of dL/dX.
    The loss is a scalar, so its upstream gradient g is one number: the forward makes
    each row block's logits once, takes their softmax in place, turns it into
    (P - onehot) / n and multiplies it out into the three gradients for g = 1 (the
    weight's summed over the blocks); the backward only scales them by g. Three matrix
    products per block, as the unchunked op, where recomputing each block's logits in
    the backward would take four. The forward keeps the gradients (an array the size
    of W) instead of the logits; under ``no_grad`` it computes the loss alone. Rows
    outside S get zero gradient.
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
        scored_rows = xp.flatnonzero(self.targets != self.ignore_index)
        rows = x if scored_rows.size == x.shape[0] else x[scored_rows]
        targets = self.targets[scored_rows]
        dtype = xp.result_type(x, weight)
        n, classes = rows.shape[0], weight.shape[0]
        need_x, need_weight = self.needs_input_grad[:2]
        need_bias = bias is not None and self.needs_input_grad[2]
        grad_rows = xp.empty(rows.shape, dtype=dtype) if need_x else None
        grad_weight = xp.empty(weight.shape, dtype=dtype) if need_weight else None
        grad_bias = xp.zeros(classes, dtype=dtype) if need_bias else None
        self.x_shape, self.has_bias, self.dtype = x.shape, bias is not None, dtype
        self.save(scored_rows=scored_rows, grad_rows=grad_rows, grad_weight=grad_weight, grad_bias=grad_bias)
        if n == 0:
            if need_weight:
                grad_weight[...] = 0
            return xp.zeros((), dtype=dtype)
        total_loss = xp.zeros((), dtype=dtype)
        blocks = logit_row_blocks(xp, n, classes, xp.dtype(dtype).itemsize)
        buffer = xp.empty((blocks[0].stop - blocks[0].start) * classes, dtype=dtype)
        for block in blocks:
            size = block.stop - block.start
            picked = (xp.arange(size), targets[block])
            logits = buffer[: size * classes].reshape(size, classes)
            xp.matmul(rows[block], weight.T, out=logits)
            if bias is not None:
                logits += bias
            target_logit = logits[picked]
            probs, shift, row_total = exp_rows(logits, out=logits)
            total_loss += (shift[:, 0] + xp.log(row_total[:, 0]) - target_logit).sum()
            if not (need_x or need_weight or need_bias):
                continue
            probs *= 1 / (n * row_total)  # P / n
            probs[picked] -= dtype.type(1 / n)  # (P - onehot) / n = dL/dX for g = 1
            if need_x:
                xp.matmul(probs, weight, out=grad_rows[block])
            if need_weight:
                add_transposed_product(grad_weight, probs, rows[block], first=block.start == 0)
            if need_bias:
                grad_bias += row_sum(probs.T)[:, 0]
        return total_loss / n

    def backward(self, g):
        xp = get_array_module(g)
        scale = g.astype(self.dtype)

        def scaled(grad):  # g times the forward's gradient, in place on the last backward
            if grad is None:
                return None
            return xp.multiply(grad, scale, out=grad if self.may_overwrite_saved else None)
        grad_x, grad_rows = None, scaled(self.grad_rows)
        if grad_rows is not None and self.scored_rows.size == self.x_shape[0]:
            grad_x = grad_rows
        elif grad_rows is not None:
            grad_x = xp.zeros(self.x_shape, dtype=grad_rows.dtype)
            grad_x[self.scored_rows] = grad_rows
        grad_bias = scaled(self.grad_bias)
        return (grad_x, scaled(self.grad_weight)) + ((grad_bias,) if self.has_bias else ())


# -- the public functions ------------------------------------------------------------
def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def cross_entropy(logits, targets, ignore_index=IGNORE_INDEX):
    """Mean negative log-likelihood of integer ``targets`` (N,) under ``logits`` (N, C),
    over the targets that are not ``ignore_index`` (0 when all are ignored)."""
    return CrossEntropy(array_of(targets), ignore_index)(logits)


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=IGNORE_INDEX):
    """``cross_entropy(linear(x, weight, bias), targets)`` as one op: x (N, in), weight
    (C, in), targets (N,). Same value and gradients, with the head computed only on the
    scored rows and one (scored, C) buffer instead of three (for a language-model head
    over a large vocabulary)."""
    return LinearCrossEntropy(array_of(targets), ignore_index)(x, weight, bias)
