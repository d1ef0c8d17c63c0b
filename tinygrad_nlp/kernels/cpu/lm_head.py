"""The language-model head and its loss on the CPU: equal to
``ops.cross_entropy.LinearCrossEntropy``, faster and in less memory.

- The scored rows go through in blocks of at most ``LOGITS_BLOCK_BYTES`` of logits, and
  each block's softmax is taken in place in one buffer (row_softmax.exp_rows): the
  (scored rows x vocabulary) logits and probabilities never exist at once. Each block
  reads and writes the whole weight gradient once, so where the weight is large (a
  vocabulary of tens of thousands times a wide model: Llama's, bert-base's) a block may
  hold up to twice the weight's bytes of logits: memory of the order of the weight's own
  gradient, and a training batch's rows often all in one block, where each of the three
  products is one long BLAS call (many short ones, each adding into the weight's
  gradient, run slower).
- The loss is a scalar, so its upstream gradient g is one number: the forward turns each
  block's softmax into (P - onehot) / n and multiplies it out into the three gradients
  for g = 1 while the block is at hand (the weight's summed over the blocks); the
  backward only scales them by g. Three matrix products per block, as the textbook op,
  where keeping nothing but recomputing each block's logits in the backward would take
  four; what is kept is an array the size of W instead of P. Under ``no_grad`` the
  forward computes the loss alone.
- The weight's gradient is added a range of its rows at a time (``add_transposed_product``),
  each product added while it is in the cache, with no (C, d) temporary.
- The bias's gradient, column sums of (P - onehot) / n, is a BLAS product (rowwise).

The CUDA path (kernels/cuda/softmax.py) is this class with the softmax kernel's
``exp_rows`` as its engine and CuPy's column sums; on the GPU all rows are one block.
"""
from __future__ import annotations

from ...backend import get_array_module, kernels, rows_per_block
from ...ops.cross_entropy import LinearCrossEntropy
from . import row_softmax
from .rowwise import row_sum

LOGITS_BLOCK_BYTES = 1 << 24
LOGITS_PER_WEIGHT_BYTE = 2  # a block may hold this many times the weight's bytes of logits
PRODUCT_BLOCK_BYTES = 1 << 20


def logit_row_blocks(xp, n_rows, n_classes, itemsize, width=0):
    """Row ranges of the (n_rows, n_classes) logits to make at a time: on the CPU equal
    blocks of at most about ``LOGITS_BLOCK_BYTES``, or ``LOGITS_PER_WEIGHT_BYTE`` times the
    bytes of the (n_classes, width) weight where that is more (at least one row each), on the GPU one block."""
    block_bytes = max(LOGITS_BLOCK_BYTES, LOGITS_PER_WEIGHT_BYTE * n_classes * width * itemsize)
    most = rows_per_block(xp, n_rows, n_classes * itemsize, block_bytes)
    size = -(-n_rows // -(-n_rows // most))  # as many blocks as needed, equally full
    return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def add_transposed_product(out, a, b, first=False):
    """out (C, d) += a^T b for a (R, C) and b (R, d) (``first``: out = a^T b, one product),
    a range of out's rows at a time: on the CPU ranges of about ``PRODUCT_BLOCK_BYTES``,
    each product added while it is in the cache, with no (C, d) temporary; on the GPU one."""
    xp = get_array_module(out, a, b)
    if first:
        xp.matmul(a.T, b, out=out)
        return
    step = rows_per_block(xp, out.shape[0], out.shape[1] * out.itemsize, PRODUCT_BLOCK_BYTES)
    scratch = xp.empty((min(step, out.shape[0]), out.shape[1]), dtype=out.dtype)
    for start in range(0, out.shape[0], step):
        span = slice(start, min(start + step, out.shape[0]))
        product = scratch[: span.stop - start]
        xp.matmul(a[:, span].T, b, out=product)
        out[span] += product


def column_sums(a):
    """a.sum(axis=0) of a 2-D array, as the BLAS product a^T ones."""
    return row_sum(a.T, keepdims=False)


@kernels.register(LinearCrossEntropy, device="cpu")
class LinearCrossEntropyInBlocks(LinearCrossEntropy):
    engine = row_softmax  # exp_rows
    column_sums = staticmethod(column_sums)

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
        blocks = logit_row_blocks(xp, n, classes, xp.dtype(dtype).itemsize, weight.shape[1])
        buffer = xp.empty((blocks[0].stop - blocks[0].start) * classes, dtype=dtype)
        for block in blocks:
            size = block.stop - block.start
            picked = (xp.arange(size), targets[block])
            logits = buffer[: size * classes].reshape(size, classes)
            xp.matmul(rows[block], weight.T, out=logits)
            if bias is not None:
                logits += bias
            target_logit = logits[picked]
            probs, shift, row_total = self.engine.exp_rows(logits, out=logits)
            total_loss += ((shift[:, 0] - target_logit) + xp.log(row_total[:, 0])).sum()  # shift - x_t first: exact
            if not (need_x or need_weight or need_bias):
                continue
            probs *= 1 / (n * row_total)  # P / n
            probs[picked] -= dtype.type(1 / n)  # (P - onehot) / n = dL/dX for g = 1
            if need_x:
                xp.matmul(probs, weight, out=grad_rows[block])
            if need_weight:
                add_transposed_product(grad_weight, probs, rows[block], first=block.start == 0)
            if need_bias:
                grad_bias += self.column_sums(probs)
        return total_loss / n

    def backward(self, g):
        xp = get_array_module(g)
        scale = g.astype(self.dtype)

        def scaled(grad):  # g times the forward's gradient, in place on the last backward
            if grad is None:
                return None
            if self.may_overwrite_saved:  # g = 1 (a plain loss.backward()): the gradient is the forward's
                return grad if scale == 1 else xp.multiply(grad, scale, out=grad)
            return xp.multiply(grad, scale)
        grad_x, grad_rows = None, scaled(self.grad_rows)
        if grad_rows is not None and self.scored_rows.size == self.x_shape[0]:
            grad_x = grad_rows
        elif grad_rows is not None:
            grad_x = xp.zeros(self.x_shape, dtype=grad_rows.dtype)
            grad_x[self.scored_rows] = grad_rows
        grad_bias = scaled(self.grad_bias)
        return (grad_x, scaled(self.grad_weight)) + ((grad_bias,) if self.has_bias else ())
