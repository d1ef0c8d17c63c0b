"""softmax, log_softmax, and cross-entropy (fused log-softmax + negative log-likelihood),
alone and fused with the linear layer before it. All subtract the row maximum first, so
logits of +-1e4 stay finite.

``exp_rows`` / ``softmax_rows`` / ``softmax_backward`` are the one forward/backward pair
of row softmax; attention uses them too.
Guide: docs/backward.md#softmax and docs/backward.md#log-softmax-and-cross-entropy
"""
from __future__ import annotations

from ..backend import get_array_module, rows_per_block, scatter_add
from ..errors import ShapeError
from ..tensor import Function, array_of
from .checks import check_ids
from .rowwise import row_max, row_sum


# -- row softmax, written once ---------------------------------------------------------
def exp_rows(x, out=None, masked_rows=False):
    """For x (..., C): exp(x - row max) (into ``out``, which may be x), the row maxima
    and the row sums of the exponentials (both (..., 1)).

    Rows go through in blocks that stay in the CPU's cache while max, subtract, exp and
    sum run over them, so memory is read once instead of four times. With
    ``masked_rows``, a row that is all -inf (a query whose keys are all masked) has its
    maximum taken as 0, so its exponentials are 0 instead of NaN.
    """
    xp = get_array_module(x)
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)
    width = x.shape[-1]
    rows_in, rows_out = x.reshape(-1, width), out.reshape(-1, width)
    n = rows_in.shape[0]
    shift = xp.empty((n, 1), dtype=x.dtype)
    total = xp.empty((n, 1), dtype=x.dtype)
    step = rows_per_block(xp, n, width * x.itemsize)
    for start in range(0, n, step):
        rows = slice(start, start + step)
        block = rows_out[rows]
        shift[rows] = row_max(rows_in[rows])
        if masked_rows:
            shift[rows][~xp.isfinite(shift[rows])] = 0
        xp.subtract(rows_in[rows], shift[rows], out=block)
        xp.exp(block, out=block)
        total[rows] = row_sum(block)
    lead = tuple(x.shape[:-1]) + (1,)
    return out, shift.reshape(lead), total.reshape(lead)


def softmax_rows(x, out=None, masked_rows=False):
    """softmax over the last axis (into ``out``, which may be x). With ``masked_rows``,
    an all -inf row gives all zeros."""
    e, _, total = exp_rows(x, out=out, masked_rows=masked_rows)
    if masked_rows:
        total[total == 0] = 1
    e /= total
    return e


def softmax_backward(y, g, out=None):
    """The VJP of y = softmax(x) over the last axis: y * (g - sum(g * y)) (into ``out``,
    which may be g)."""
    xp = get_array_module(y, g)
    grad = xp.subtract(g, row_sum(g * y), out=out)
    grad *= y
    return grad


def _check_axis(op, x, axis):
    if not -x.ndim <= axis < x.ndim or x.shape[axis] == 0:
        raise ShapeError(f"{op}: axis {axis} is out of range or empty for input {tuple(x.shape)}")


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
        y = xp.moveaxis(softmax_rows(xp.moveaxis(x, self.axis, -1)), -1, self.axis)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g = xp.moveaxis(self.y, self.axis, -1), xp.moveaxis(g, self.axis, -1)
        return xp.moveaxis(softmax_backward(y, g), -1, self.axis)


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
        rows = xp.moveaxis(x, self.axis, -1)
        _, shift, total = exp_rows(rows)
        y = xp.moveaxis(rows - (shift + xp.log(total)), -1, self.axis)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g = xp.moveaxis(self.y, self.axis, -1), xp.moveaxis(g, self.axis, -1)
        return xp.moveaxis(g - xp.exp(y) * row_sum(g), -1, self.axis)


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

    def __init__(self, targets, ignore_index=-100):
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


def vocabulary_chunks(xp, n_rows, n_classes, itemsize):
    """Column ranges of the (n_rows, n_classes) logits to compute at a time: on the CPU
    chunks of about ``LOGITS_CHUNK_BYTES`` and at least ``MIN_CHUNK_COLUMNS`` wide (in
    cache while they are exponentiated and summed, wide enough for fast matrix
    products), on the GPU one."""
    width = rows_per_block(xp, n_classes, n_rows * itemsize, LOGITS_CHUNK_BYTES)
    width = max(min(MIN_CHUNK_COLUMNS, n_classes), width)
    return [slice(start, min(start + width, n_classes)) for start in range(0, n_classes, width)]


LOGITS_CHUNK_BYTES = 1 << 21
MIN_CHUNK_COLUMNS = 256


class LinearCrossEntropy(CrossEntropy):
    """cross_entropy(x W^T + b, targets): the language-model head and its loss as one op,
    computed over the vocabulary in chunks so that the (scored rows x C) logits never
    exist in memory (the "cut cross-entropy" of Wijmans et al., 2024).

    Only the scored rows S (n of them) enter; for those, with X = x W^T + b,
        L = (1/n) sum_r (lse_r - X[r, t_r]),   lse_r = log sum_j exp X[r, j].
    Forward: each chunk of columns X[:, c] is made, its row maxima merged into the
    running maxima m (the running sums s rescaled by exp(m_old - m_new)) and
    exp(X[:, c] - m) added to s; lse = m + log s. The target logit is the row dot
    product x_r . W[t_r] + b[t_r]. Only lse (n,) is saved besides the inputs.
    Backward: dL/dX = (g/n) (P - onehot(t)), P = exp(X - lse). Each chunk's X[:, c] is
    made again and turned into G_c = (g/n) P[:, c]; then dL/dx += G_c W[c],
    dL/dW[c] = G_c^T x, dL/db[c] = column sums of G_c. The one-hot part is added at the
    end: dL/dx_r -= (g/n) W[t_r], dL/dW[t_r] -= (g/n) x_r, dL/db[t_r] -= g/n (scattered,
    as targets repeat). Rows outside S get zero gradient. One more matrix product than
    the unchunked op, and no pass over a (n, C) array in memory.
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
        n = rows.shape[0]
        self.x_shape = x.shape
        self.save(rows=rows, weight=weight, bias=bias, scored_rows=scored_rows, targets=targets)
        if n == 0:
            self.save(lse=xp.zeros(0, dtype=dtype))
            return xp.zeros((), dtype=dtype)
        running_max = xp.full(n, -xp.inf, dtype=dtype)
        running_sum = xp.zeros(n, dtype=dtype)
        for _, logits in self._chunk_logits(xp, dtype):
            chunk_max = xp.maximum(running_max, row_max(logits)[:, 0])
            running_sum *= xp.exp(running_max - chunk_max)
            logits -= chunk_max[:, None]
            xp.exp(logits, out=logits)
            running_sum += row_sum(logits)[:, 0]
            running_max = chunk_max
        lse = running_max + xp.log(running_sum)
        target_logit = xp.einsum("nd,nd->n", rows, weight[targets])
        if bias is not None:
            target_logit += bias[targets]
        self.save(lse=lse)
        return xp.asarray((lse - target_logit).sum() / n, dtype=dtype)

    def _chunk_logits(self, xp, dtype):
        """For each vocabulary chunk c, (c, the logits X[:, c] = rows W[c]^T + b[c]), the
        logits written into one reused buffer (valid until the next chunk)."""
        rows, weight, bias = self.rows, self.weight, self.bias
        n = rows.shape[0]
        chunks = vocabulary_chunks(xp, n, weight.shape[0], xp.dtype(dtype).itemsize)
        buffer = xp.empty(n * (chunks[0].stop - chunks[0].start), dtype=dtype)
        for cols in chunks:
            logits = buffer[: n * (cols.stop - cols.start)].reshape(n, cols.stop - cols.start)
            xp.matmul(rows, weight[cols].T, out=logits)
            if bias is not None:
                logits += bias[cols]
            yield cols, logits

    def backward(self, g):
        xp = get_array_module(g)
        rows, weight, bias, targets = self.rows, self.weight, self.bias, self.targets
        need_x, need_weight = self.needs_input_grad[0], self.needs_input_grad[1]
        need_bias = bias is not None and self.needs_input_grad[2]
        dtype = self.lse.dtype
        n = rows.shape[0]
        row_weight = (g / max(n, 1)).astype(dtype)  # g/n: every scored row counts the same
        grad_rows = xp.zeros(rows.shape, dtype=dtype) if need_x else None
        grad_weight = xp.empty(weight.shape, dtype=dtype) if need_weight else None
        grad_bias = xp.empty(weight.shape[0], dtype=dtype) if need_bias else None
        if n == 0:
            grad_weight = None if grad_weight is None else xp.zeros_like(grad_weight)
            grad_bias = None if grad_bias is None else xp.zeros_like(grad_bias)
        else:
            for cols, logits in self._chunk_logits(xp, dtype):
                logits -= self.lse[:, None]
                xp.exp(logits, out=logits)
                logits *= row_weight  # G_c = (g/n) P[:, c]
                if need_x:
                    grad_rows += logits @ weight[cols]
                if need_weight:
                    xp.matmul(logits.T, rows, out=grad_weight[cols])
                if need_bias:
                    grad_bias[cols] = row_sum(logits.T)[:, 0]
            # the one-hot part, -(g/n) at each row's target
            if need_x:
                grad_rows -= row_weight * weight[targets]
            if need_weight:
                scatter_add(grad_weight, targets, -row_weight * rows)
            if need_bias:
                scatter_add(grad_bias, targets, xp.full(n, -row_weight, dtype=dtype))
        grad_x = None
        if need_x:
            if self.scored_rows.size == self.x_shape[0]:
                grad_x = grad_rows
            else:
                grad_x = xp.zeros(self.x_shape, dtype=dtype)
                grad_x[self.scored_rows] = grad_rows
        return (grad_x, grad_weight) + ((grad_bias,) if bias is not None else ())


# -- the public functions ------------------------------------------------------------
def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean negative log-likelihood of integer ``targets`` (N,) under ``logits`` (N, C),
    over the targets that are not ``ignore_index`` (0 when all are ignored)."""
    return CrossEntropy(array_of(targets), ignore_index)(logits)


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100):
    """``cross_entropy(linear(x, weight, bias), targets)`` as one op: x (N, in), weight
    (C, in), targets (N,). Same value and gradients, with the head computed only on the
    scored rows and one (scored, C) buffer instead of three (for a language-model head
    over a large vocabulary)."""
    return LinearCrossEntropy(array_of(targets), ignore_index)(x, weight, bias)
