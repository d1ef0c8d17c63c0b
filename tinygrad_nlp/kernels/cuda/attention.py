"""Attention on the row-softmax kernels (softmax.cu): equal to ``ops.attention``'s three
ops, for the mask they draw.

The textbook's softmax over the keys is five array passes on the GPU (max, subtract,
exp, sum, divide), each a kernel launch and a round trip of the (B, H, Tq, Tk) scores
through memory; here it is one launch (``softmax_rows``), and so is its backward,
P * (dP - sum(dP * P)) (``softmax_backward_rows``). The whole batch goes at once and P
is kept, as in the textbook. With the dropout kernel switched on too
(``TINYGRAD_NLP_FUSED_KERNELS=softmax,dropout``), P' = P * m / (1 - p) is one launch of
dropout.cu drawing m from the Philox generator (``PhiloxMask``), and nothing of m's size
is kept: the backward draws the same m again from its place in the generator. (A ragged
batch's sequences get their share of one drawn mask: the textbook's.)
"""
from __future__ import annotations

import math

from ...backend import get_array_module, kernels
from ...ops.attention import PackedSelfAttention, RaggedSelfAttention, ScaledDotProductAttention
from .dropout import PhiloxMask
from .softmax import softmax_backward_rows, softmax_rows


class AttentionKernel(ScaledDotProductAttention):
    """Attention on the softmax kernels, the textbook's boolean dropout mask."""

    def suits(self, q, k, v):
        return kernels.suits_kernel(q, k, v)

    def forward(self, q, k, v):
        xp = get_array_module(q, k, v)
        self.scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))
        s = self.scores(xp, q, k)
        p = softmax_rows(s, out=s, masked_rows=True)  # an all-masked row gives zeros
        self.save(q=q, k=k, v=v, probs=p, keep=self.dropout_draw(xp, p.shape))
        return self.dropped(p) @ v

    def backward(self, g):
        p = self.probs
        grad_v = self.dropped(p).swapaxes(-1, -2) @ g
        grad_p = self.dropped(g @ self.v.swapaxes(-1, -2))
        grad_s = softmax_backward_rows(p, grad_p, out=grad_p)
        grad_s *= self.scale
        return grad_s @ self.k, grad_s.swapaxes(-1, -2) @ self.q, grad_v


class AttentionDropoutKernel(AttentionKernel):
    """Attention on the softmax kernels with P' made by the dropout kernel: the mask is
    its place in the Philox generator, drawn again wherever it is applied, never stored."""

    def suits(self, *arrays):
        return kernels.suits_kernel(*arrays) and self.training and 0 < self.dropout_p < 1 and self.given_keep is None

    def dropout_draw(self, xp, shape):
        return PhiloxMask(self.dropout_p, math.prod(shape[1:]))

    def dropped(self, x):
        return self.keep.apply(x)  # the same stream each time: the same mask


class PackedSelfAttentionKernel(PackedSelfAttention, AttentionKernel):
    def suits(self, qkv):
        return kernels.suits_kernel(qkv)


class PackedSelfAttentionDropoutKernel(PackedSelfAttention, AttentionDropoutKernel):
    def suits(self, qkv):
        return AttentionDropoutKernel.suits(self, qkv)


class RaggedSelfAttentionKernel(RaggedSelfAttention):
    sequence_op = AttentionKernel

    def suits(self, qkv):
        return kernels.suits_kernel(qkv)


# with the dropout kernel on as well, its classes first
for op, with_dropout, without in ((ScaledDotProductAttention, AttentionDropoutKernel, AttentionKernel),
                                  (PackedSelfAttention, PackedSelfAttentionDropoutKernel, PackedSelfAttentionKernel)):
    kernels.register(op, device="cuda", kernel=("softmax", "dropout"))(with_dropout)
    kernels.register(op, device="cuda", kernel="softmax")(without)
kernels.register(RaggedSelfAttention, device="cuda", kernel="softmax")(RaggedSelfAttentionKernel)
