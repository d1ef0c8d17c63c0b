"""The public face of the ops: ``import tinygrad_nlp.functional as F``.

Every function takes Tensors (or arrays / Python numbers where that is natural) and
returns a Tensor; the graph is recorded by the Function each one calls.
"""
from __future__ import annotations

from .backend import get_array_module
from .ops import attention as _attention
from .ops import dropout as _dropout
from .ops import elementwise as _ew
from .ops import embedding as _embedding
from .ops import layernorm as _layernorm
from .ops import linear as _linear
from .ops import shape as _shape
from .ops import softmax as _softmax
from .tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu", "gelu", "tanh",
    "reshape", "transpose", "permute", "getitem", "concatenate", "sum", "mean",
    "matmul", "linear", "embedding", "softmax", "log_softmax", "cross_entropy",
    "linear_cross_entropy",
    "layer_norm", "dropout", "scaled_dot_product_attention", "self_attention",
]


def _tensor(x, like: Tensor | None = None) -> Tensor:
    """x as a Tensor; a Python number takes the dtype and device of ``like``."""
    if isinstance(x, Tensor):
        return x
    if like is not None and not hasattr(x, "shape"):
        xp = get_array_module(like.data)
        return Tensor(xp.asarray(x, dtype=like.dtype))
    return Tensor(x)


def _pair(a, b):
    a_t = a if isinstance(a, Tensor) else None
    b_t = b if isinstance(b, Tensor) else None
    return _tensor(a, b_t), _tensor(b, a_t)


def _raw(x):
    """The array inside a Tensor (or the argument itself)."""
    return x.data if isinstance(x, Tensor) else x


# elementwise --------------------------------------------------------------------
def add(a, b):
    return _ew.Add()(*_pair(a, b))


def sub(a, b):
    return _ew.Sub()(*_pair(a, b))


def mul(a, b):
    return _ew.Mul()(*_pair(a, b))


def div(a, b):
    return _ew.Div()(*_pair(a, b))


def pow(a, b):
    a, b = _pair(a, b)
    return _ew.Pow(b_requires_grad=b.requires_grad)(a, b)


def neg(x):
    return _ew.Neg()(_tensor(x))


def exp(x):
    return _ew.Exp()(_tensor(x))


def log(x):
    return _ew.Log()(_tensor(x))


def relu(x):
    return _ew.ReLU()(_tensor(x))


def gelu(x):
    """GELU in its tanh approximation (as BERT and GPT-2 use)."""
    return _ew.GELU()(_tensor(x))


def tanh(x):
    return _ew.Tanh()(_tensor(x))


# shape and reductions -------------------------------------------------------------
def reshape(x, shape):
    return _shape.Reshape(shape)(_tensor(x))


def transpose(x, axes=None):
    return _shape.Transpose(axes)(_tensor(x))


def permute(x, axes):
    return _shape.Transpose(axes)(_tensor(x))


def getitem(x, index):
    return _shape.GetItem(index)(_tensor(x))


def concatenate(tensors, axis=0):
    return _shape.Concatenate(axis)(*[_tensor(t) for t in tensors])


def sum(x, axis=None, keepdims=False):
    return _shape.Sum(axis, keepdims)(_tensor(x))


def mean(x, axis=None, keepdims=False):
    return _shape.Mean(axis, keepdims)(_tensor(x))


# products -----------------------------------------------------------------------------
def matmul(a, b):
    return _linear.MatMul()(_tensor(a), _tensor(b))


def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch."""
    args = (_tensor(x), _tensor(weight)) + ((_tensor(bias),) if bias is not None else ())
    return _linear.Linear()(*args)


# the layers --------------------------------------------------------------------------
def embedding(ids, weight):
    """Rows of ``weight`` (V, D) selected by integer ``ids`` of any shape -> (*ids.shape, D)."""
    return _embedding.Embedding(_raw(ids))(_tensor(weight))


def softmax(x, axis=-1):
    return _softmax.Softmax(axis)(_tensor(x))


def log_softmax(x, axis=-1):
    return _softmax.LogSoftmax(axis)(_tensor(x))


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean negative log-likelihood of integer ``targets`` (N,) under ``logits`` (N, C),
    over the targets that are not ``ignore_index`` (0 when all are ignored)."""
    return _softmax.CrossEntropy(_raw(targets), ignore_index)(_tensor(logits))


def linear_cross_entropy(x, weight, targets, bias=None, ignore_index=-100):
    """``cross_entropy(linear(x, weight, bias), targets)`` as one op: x (N, in), weight
    (C, in), targets (N,). Same value and gradients, with one (N, C) buffer instead of
    three (for a language-model head over a large vocabulary)."""
    args = (_tensor(x), _tensor(weight)) + ((_tensor(bias),) if bias is not None else ())
    return _softmax.LinearCrossEntropy(_raw(targets), ignore_index)(*args)


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis, then scale by ``weight`` and shift by ``bias``."""
    return _layernorm.LayerNorm(eps)(_tensor(x), _tensor(weight), _tensor(bias))


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The identity (the same Tensor) when ``training`` is False or p == 0."""
    _dropout.check_p(p)
    if not training or p == 0:
        return _tensor(x)
    return _dropout.Dropout(p)(_tensor(x))


def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
    """softmax(q k^T / sqrt(Dh), masked) v for q, k, v of shape (B, H, T, Dh).

    ``mask``: a boolean key-padding mask (B, T), True where a key may be attended to, or
    an array broadcastable to (B, H, Tq, Tk) (boolean: True = attend; float: added to
    the scores). A query whose keys are all masked outputs zeros (and gets zero
    gradients). ``dropout_p`` drops attention probabilities when ``training``.
    """
    return _attention.ScaledDotProductAttention(_raw(mask), dropout_p, training)(_tensor(q), _tensor(k), _tensor(v))


def self_attention(qkv, n_heads, mask=None, dropout_p=0.0, training=True):
    """Multi-head self-attention from a fused QKV projection ``qkv`` (B, T, 3 * D), laid
    out as (B, T, [q|k|v], n_heads, D / n_heads): the heads' outputs side by side,
    (B, T, D). Equal to splitting q, k, v into heads, ``scaled_dot_product_attention``
    with the same ``mask`` and dropout, and merging the heads; faster, and with one
    gradient buffer."""
    return _attention.PackedSelfAttention(n_heads, _raw(mask), dropout_p, training)(_tensor(qkv))
