"""Break-it exercises: backwards that are wrong in one known way.

Each function below is the textbook ``backward`` of an op in ``tinygrad_nlp/ops/`` with
one mistake in it, marked ``# the mistake``, and its first docstring line says which.
Run one and read how the check catches it:

    python docs/check.py --break list
    python docs/check.py layer_norm --break variance

``broken(b)`` puts break ``b``'s backward in the place of its op's own for the length of
a ``with`` block (and puts the right one back after), in reference mode, so that the
textbook class, now broken, is what runs. Then compare the function with the textbook
method the check's message points to: the difference is the lesson.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass

from tinygrad_nlp import reference_ops
from tinygrad_nlp.backend import get_array_module
from tinygrad_nlp.ops.attention import ScaledDotProductAttention
from tinygrad_nlp.ops.cross_entropy import CrossEntropy
from tinygrad_nlp.ops.dropout import Dropout
from tinygrad_nlp.ops.embedding import Embedding
from tinygrad_nlp.ops.grouped_attention import GroupedQueryAttention
from tinygrad_nlp.ops.layernorm import LayerNorm
from tinygrad_nlp.ops.linear import Linear, as_rows
from tinygrad_nlp.ops.rms_norm import RMSNorm
from tinygrad_nlp.ops.rotary import RotaryEmbedding, rotate_half
from tinygrad_nlp.ops.softmax import LogSoftmax, Softmax
from tinygrad_nlp.ops.swiglu import SwiGLU, sigmoid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Break:
    check: str         # the check of docs/check.py that runs the op
    name: str          # short: "variance" in "layer_norm variance"
    op: type           # the textbook class whose backward it replaces
    backward: object   # the broken backward
    section: str       # the title of its section in docs/backward.md

    @property
    def description(self) -> str:
        return self.backward.__doc__.strip().splitlines()[0]

    def guide(self) -> str:
        """Its section of the guide: 'docs/backward.md#layer-norm ("Layer norm")'."""
        anchor = "".join(c for c in self.section.lower() if c.isalnum() or c in " -").replace(" ", "-")
        return f'docs/backward.md#{anchor} ("{self.section}")'

    def textbook(self) -> str:
        """Where the right backward is: 'tinygrad_nlp/ops/layernorm.py:45 (LayerNorm.backward)'."""
        return where(vars(self.op)["backward"], f"{self.op.__name__}.backward")

    def code(self) -> str:
        """Where this broken backward is: 'docs/breaks.py:127 (layer_norm_without_variance)'."""
        return where(self.backward, self.backward.__name__)


def where(function, name) -> str:
    path = os.path.relpath(inspect.getsourcefile(function), ROOT)
    return f"{path}:{inspect.getsourcelines(function)[1]} ({name})"


BREAKS = []


def breaks(check, name, op, section):
    """Register the function below as the break ``check name`` of ``op``'s backward."""
    def register(backward):
        BREAKS.append(Break(check, name, op, backward, section))
        return backward
    return register


@contextlib.contextmanager
def broken(b: Break):
    """Within this block ``b.op`` runs ``b.backward``, on the textbook ops."""
    right = vars(b.op)["backward"]
    b.op.backward = b.backward
    try:
        with reference_ops():
            yield
    finally:
        b.op.backward = right


# -- the breaks, one op family after another --------------------------------------------
@breaks("embedding", "overwrite", Embedding, "Embedding")
def embedding_overwrite(self, g):
    """Repeated ids overwrite each other's gradient rows instead of adding up (grad[ids] = g)."""
    xp = get_array_module(g)
    grad = xp.zeros((self.num_embeddings, g.shape[-1]), dtype=g.dtype)  # (V, D)
    grad[self.ids] = g  # the mistake: the last row with id v wins; scatter_add sums them all
    return grad


@breaks("linear", "average", Linear, "Linear")
def linear_weight_averaged(self, g):
    """The weight gradient averaged over the rows instead of summed (G^T X / N)."""
    g = as_rows(g)                                              # G (N, out)
    grad_x = (g @ self.weight).reshape(self.x.shape)            # dL/dX = G W
    grad_weight = g.T @ as_rows(self.x) / g.shape[0]            # the mistake: / N (the loss's mean already has it)
    if self.has_bias:
        return grad_x, grad_weight, g.sum(axis=0)
    return grad_x, grad_weight


@breaks("softmax", "row-sum", Softmax, "Softmax")
def softmax_without_row_sum(self, g):
    """Only the Jacobian's diagonal: y * g, without the row-sum term y * sum(g * y)."""
    return self.y * g  # the mistake: y * (g - (g * y).sum(axis, keepdims=True)) is right


@breaks("log_softmax", "sum", LogSoftmax, "Softmax")
def log_softmax_without_sum(self, g):
    """softmax(x) not multiplied by the sum of g along the axis: g - softmax(x)."""
    xp = get_array_module(g)
    return g - xp.exp(self.y)  # the mistake: g - exp(y) * g.sum(axis, keepdims=True) is right


@breaks("cross_entropy", "mean", CrossEntropy, "Log-softmax and cross-entropy")
def cross_entropy_without_mean(self, g):
    """The loss is a mean over the n scored rows, but the gradient is not divided by n."""
    xp = get_array_module(g)
    probs = xp.exp(self.log_probs)                                     # (N, C)
    onehot = xp.arange(probs.shape[1]) == self.picked[:, None]         # (N, C)
    row_weight = self.scored[:, None] * g                              # the mistake: g, not g / n
    return ((probs - onehot) * row_weight).reshape(self.logits_shape)


@breaks("layer_norm", "variance", LayerNorm, "Layer norm")
def layer_norm_without_variance(self, g):
    """dL/dx without the path through the variance (the term - xhat * mean(dxhat * xhat))."""
    xhat = (self.x - self.mean) * self.rstd                    # (..., D)
    dxhat = g * self.weight                                    # (..., D)
    direct = dxhat
    through_mean = dxhat.mean(axis=-1, keepdims=True)
    through_variance = 0  # the mistake: xhat * (dxhat * xhat).mean(axis=-1, keepdims=True) left out
    grad_x = self.rstd * (direct - through_mean - through_variance)
    rows = tuple(range(g.ndim - 1))
    return grad_x, (g * xhat).sum(axis=rows), g.sum(axis=rows)


@breaks("layer_norm", "mean", LayerNorm, "Layer norm")
def layer_norm_without_mean(self, g):
    """dL/dx without the path through the mean (the term - mean(dxhat))."""
    xhat = (self.x - self.mean) * self.rstd                    # (..., D)
    dxhat = g * self.weight                                    # (..., D)
    direct = dxhat
    through_mean = 0  # the mistake: dxhat.mean(axis=-1, keepdims=True) left out
    through_variance = xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    grad_x = self.rstd * (direct - through_mean - through_variance)
    rows = tuple(range(g.ndim - 1))
    return grad_x, (g * xhat).sum(axis=rows), g.sum(axis=rows)


@breaks("dropout", "scale", Dropout, "Dropout")
def dropout_without_scale(self, g):
    """The kept gradients not scaled by 1/(1-p), as the kept inputs were."""
    return g * self.keep  # the mistake: g * keep * keep_scale(p), 1/(1-p), is right


@breaks("attention", "softmax", ScaledDotProductAttention, "Scaled dot-product attention")
def attention_without_softmax_backward(self, g):
    """The softmax's backward left out: dS = dP instead of P * (dP - sum_k(dP * P))."""
    p = self.probs                                             # P (B, H, Tq, Tk)
    grad_v = self.dropped(p).swapaxes(-1, -2) @ g              # dV = P'^T g
    grad_p = self.dropped(g @ self.v.swapaxes(-1, -2))         # dP = (g V^T) m / (1 - p)
    grad_s = grad_p                                            # the mistake: dS = dP
    grad_q = self.scale * (grad_s @ self.k)                    # dQ = s dS K
    grad_k = self.scale * (grad_s.swapaxes(-1, -2) @ self.q)   # dK = s dS^T Q
    return grad_q, grad_k, grad_v



@breaks("rms_norm", "mean-square", RMSNorm, "RMSNorm")
def rms_norm_without_mean_square(self, g):
    """dL/dx without the path through the mean square (the term - xhat * mean(dxhat * xhat))."""
    xhat = self.x * self.rstd                                  # (..., D)
    dxhat = g * self.weight                                    # (..., D)
    direct = dxhat
    through_mean_square = 0  # the mistake: xhat * (dxhat * xhat).mean(axis=-1, keepdims=True) left out
    grad_x = self.rstd * (direct - through_mean_square)
    rows = tuple(range(g.ndim - 1))
    return grad_x, (g * xhat).sum(axis=rows)


@breaks("rotary_embedding", "direction", RotaryEmbedding, "Rotary position embeddings")
def rotary_turned_forward_again(self, g):
    """The gradient turned by the angle again (rotate_half) instead of back (its transpose, [u2, -u1])."""
    return g * self.cos + rotate_half(g * self.sin)  # the mistake: rotate_half_transposed(g * self.sin) is right


@breaks("swiglu", "slope", SwiGLU, "SiLU and SwiGLU")
def swiglu_with_sigmoid_for_slope(self, g):
    """silu'(gate) taken as sigmoid(gate): the product rule's second term, gate * s (1 - s), left out."""
    s = sigmoid(self.gate)
    grad_up = g * self.gate * s
    grad_gate = g * self.up * s  # the mistake: g * up * s * (1 + gate * (1 - s)) is right
    return grad_gate, grad_up


@breaks("grouped_query_attention", "mean", GroupedQueryAttention, "Grouped-query attention")
def grouped_attention_averaged_over_groups(self, g):
    """dK and dV averaged over each group of query heads instead of summed (each copy fed the loss)."""
    grad_q, grad_k, grad_v = ScaledDotProductAttention.backward(self, g)  # dK', dV' per query head
    B, H, Tk, _ = grad_k.shape
    grad_k = grad_k.reshape(B, H // self.group, self.group, Tk, -1).mean(axis=2)  # the mistake: .sum(axis=2)
    grad_v = grad_v.reshape(B, H // self.group, self.group, Tk, -1).mean(axis=2)
    return grad_q, grad_k, grad_v
