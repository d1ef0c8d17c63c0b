"""The public face of the ops: ``import tinygrad_nlp.functional as F``.

Each function lives beside its ``Function`` class in ``ops/<family>.py``; this module
gathers them, registers the faster implementations of ``kernels/`` for the one dispatch
(by importing that package), and attaches Tensor's operators and methods (``a + b``, ``x.sum()``,
``x[i]``) once, so ``tensor.py`` never imports the ops above it.
"""
from __future__ import annotations

from . import kernels  # noqa: F401  (registers every fast path with backend.kernels)
from .ops.activations import gelu, relu, silu
from .ops.attention import ragged_self_attention, scaled_dot_product_attention, self_attention
from .ops.cross_entropy import IGNORE_INDEX as IGNORE_INDEX  # a target that scores nothing: F.IGNORE_INDEX
from .ops.cross_entropy import cross_entropy, linear_cross_entropy
from .ops.dropout import dropout
from .ops.elementwise import add, div, exp, log, mul, neg, pow, sub, tanh
from .ops.embedding import embedding
from .ops.grouped_attention import grouped_query_attention
from .ops.layernorm import layer_norm
from .ops.linear import linear, matmul
from .ops.rms_norm import rms_norm
from .ops.rotary import rotary_embedding
from .ops.shape import concatenate, getitem, mean, permute, reshape, scatter_rows, sum, transpose
from .ops.softmax import log_softmax, softmax
from .ops.swiglu import swiglu
from .tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu", "gelu", "tanh",
    "reshape", "transpose", "permute", "getitem", "scatter_rows", "concatenate", "sum", "mean",
    "matmul", "linear", "embedding", "softmax", "log_softmax", "cross_entropy",
    "linear_cross_entropy",
    "layer_norm", "dropout", "scaled_dot_product_attention", "self_attention", "ragged_self_attention",
    "rms_norm", "rotary_embedding", "silu", "swiglu", "grouped_query_attention",
]


def _shape_args(args):
    """``x.reshape(2, 3)`` and ``x.reshape((2, 3))`` alike."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


def _attach_tensor_operators() -> None:
    operators = {
        "__add__": add, "__radd__": lambda a, b: add(b, a),
        "__sub__": sub, "__rsub__": lambda a, b: sub(b, a),
        "__mul__": mul, "__rmul__": lambda a, b: mul(b, a),
        "__truediv__": div, "__rtruediv__": lambda a, b: div(b, a),
        "__pow__": pow, "__rpow__": lambda a, b: pow(b, a),
        "__matmul__": matmul, "__rmatmul__": lambda a, b: matmul(b, a),
        "__neg__": neg, "__getitem__": getitem,
        "reshape": lambda x, *shape: reshape(x, _shape_args(shape)),
        "transpose": lambda x, *axes: transpose(x, _shape_args(axes) or None),
        "permute": lambda x, *axes: transpose(x, _shape_args(axes) or None),
        "T": property(lambda x: transpose(x)),
        "sum": sum, "mean": mean, "exp": exp, "log": log, "relu": relu, "tanh": tanh,
    }
    for name, function in operators.items():
        setattr(Tensor, name, function)


_attach_tensor_operators()
