"""The SwiGLU gate of Llama's MLP: silu(gate) * up, one op. Guide: docs/backward.md#silu-and-swiglu"""
from __future__ import annotations

from ..errors import ShapeError
from ..tensor import Function
from .activations import sigmoid


class SwiGLU(Function):
    """y = silu(gate) * up, with silu(a) = a s, s = sigmoid(a), elementwise; Llama's MLP
    is down(swiglu(gate_proj(x), up_proj(x))).

    Backward (the product rule twice, sigmoid' = s (1 - s)):
        dL/dup   = g * silu(gate)
        dL/dgate = g * up * silu'(gate),  silu'(a) = s (1 + a (1 - s)).

    Saves: gate and up; s = sigmoid(gate) is made again in the backward (two arrays kept,
    where keeping silu(gate) and its slope beside up would be three).
    """

    floating = True

    def check(self, gate, up):
        if tuple(gate.shape) != tuple(up.shape):
            raise ShapeError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} must have one shape")

    def forward(self, gate, up):
        self.save(gate=gate, up=up)
        return gate * sigmoid(gate) * up                           # silu(gate) * up

    def backward(self, g):
        s = sigmoid(self.gate)                                     # s = sigmoid(gate)
        grad_up = g * self.gate * s                                # dL/dup = g silu(gate)
        grad_gate = g * self.up * s * (1 + self.gate * (1 - s))    # dL/dgate = g up silu'(gate)
        return grad_gate, grad_up


def swiglu(gate, up):
    """silu(gate) * up, elementwise (the gated MLP of Llama: ``down(swiglu(gate_proj(x),
    up_proj(x)))``), as one op with one node."""
    return SwiGLU()(gate, up)
