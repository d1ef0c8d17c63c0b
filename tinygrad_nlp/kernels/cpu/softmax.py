"""Softmax, log-softmax and cross-entropy on the CPU: equal to ``ops.softmax.Softmax``,
``ops.softmax.LogSoftmax`` and ``ops.cross_entropy.CrossEntropy``, faster.

- Each goes through the row-softmax engine (row_softmax.py): rows in cache-sized
  blocks, so max, subtract, exp and sum read memory once instead of four times; short
  rows sharing their block's maximum; row sums as BLAS products; every pass in place.
- Log-softmax takes its log-sum-exp from the engine's shifts and row sums, so it never
  forms exp(x - max) as an array of its own to sum, and its backward's row sums are BLAS
  products too.
- Cross-entropy never forms the log-probabilities: the loss is log(row sum) + shift -
  x[target] per row, and the forward keeps exp(x - shift) and 1 / the row sums, which
  the last backward turns into the gradient in place (one array of the logits' size in
  all, where the textbook makes several).

The CUDA paths (kernels/cuda/softmax.py) are these classes with the softmax kernel's
launchers as the engine in place of ``row_softmax``: the rest is array code that runs on
CuPy as on NumPy, but for log-softmax's backward, whose BLAS row sums are NumPy's.
"""
from __future__ import annotations

from ...backend import get_array_module, kernels
from ...ops.cross_entropy import CrossEntropy
from ...ops.softmax import LogSoftmax, Softmax
from . import row_softmax
from .rowwise import row_sum


def to_last(xp, a, axis):
    """``a`` with ``axis`` moved last (a 0-d array as one element)."""
    return a.reshape(1) if a.ndim == 0 else xp.moveaxis(a, axis, -1)


def from_last(xp, a, axis, shape):
    """The inverse of ``to_last`` for an input of ``shape``."""
    return a.reshape(shape) if len(shape) == 0 else xp.moveaxis(a, -1, axis)


@kernels.register(Softmax, device="cpu")
class SoftmaxRows(Softmax):
    engine = row_softmax  # exp_rows, softmax_rows, softmax_backward_rows

    def forward(self, x):
        xp = get_array_module(x)
        y = from_last(xp, self.engine.softmax_rows(to_last(xp, x, self.axis)), self.axis, x.shape)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g_rows = to_last(xp, self.y, self.axis), to_last(xp, g, self.axis)
        return from_last(xp, self.engine.softmax_backward_rows(y, g_rows), self.axis, g.shape)


@kernels.register(LogSoftmax, device="cpu")
class LogSoftmaxRows(LogSoftmax):
    engine = row_softmax

    def forward(self, x):
        xp = get_array_module(x)
        rows = to_last(xp, x, self.axis)
        _, shift, total = self.engine.exp_rows(rows)
        y = from_last(xp, rows - (shift + xp.log(total)), self.axis, x.shape)
        self.save(y=y)
        return y

    def backward(self, g):
        xp = get_array_module(g)
        y, g_rows = to_last(xp, self.y, self.axis), to_last(xp, g, self.axis)
        return from_last(xp, g_rows - xp.exp(y) * row_sum(g_rows), self.axis, g.shape)


@kernels.register(CrossEntropy, device="cpu")
class CrossEntropyRows(CrossEntropy):
    engine = row_softmax

    def forward(self, logits):
        """Saves exp(x - shift) of the (N, C) rows and 1 / their row sums."""
        xp = get_array_module(logits)
        self.logits_shape = logits.shape
        x, targets = logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1)
        scored = targets != self.ignore_index
        safe_targets = xp.where(scored, targets, 0)
        self.count = int(scored.sum())
        target_logit = x[xp.arange(x.shape[0]), safe_targets]
        e, shift, total = self.engine.exp_rows(x)
        # -log p_t = (shift - x_t) + log(sum e), without forming log-probabilities; shift - x_t
        # first, as it is exact where the two are close, however large both are
        nll = (shift[:, 0] - target_logit) + xp.log(total[:, 0])
        self.save(exp_shifted=e, inv_total=1 / total[:, 0], scored=scored, safe_targets=safe_targets)
        return xp.asarray(xp.where(scored, nll, 0).sum() / max(self.count, 1), dtype=x.dtype)

    def backward(self, g):
        """dL/dx = (softmax - onehot) * scored * g / n, made from the saved exponentials
        (written over them on the last backward)."""
        xp = get_array_module(g)
        e = self.exp_shifted
        row_weight = (self.scored * (g / max(self.count, 1))).astype(e.dtype)
        grad = xp.multiply(e, (row_weight * self.inv_total)[:, None], out=e if self.may_overwrite_saved else None)
        grad[xp.arange(e.shape[0]), self.safe_targets] -= row_weight
        return grad.reshape(self.logits_shape)
