"""A linear layer's bias and activation as CUDA kernels (bias_activation.cu): equal to
``ops.linear.Linear`` with a bias and an activation. The forward adds the bias and
applies the activation in one launch, and keeps z = x W^T + b (which the kernel leaves
in the product's array) instead of what the activation would keep; the backward forms
G * act'(z) in one launch, over z itself on the last backward. The two products are
cuBLAS's, as in the textbook op."""
from __future__ import annotations

import pathlib

import numpy as np

from ...backend import get_array_module, kernels
from ...ops.linear import Linear, as_rows

SOURCE = pathlib.Path(__file__).with_name("bias_activation.cu")
KIND = {"relu": 1, "gelu": 2, "gelu_tanh": 3}  # each activation's number in the .cu's activation() and slope()
# (not every activation of ops.activations.ACTIVATIONS has one: "silu" has no kernel yet, and runs on the textbook op)


@kernels.register(Linear, device="cuda", kernel="bias_activation")
class LinearBiasActivationKernel(Linear):
    def suits(self, x, weight, bias=None):
        return self.activation in KIND and bias is not None and kernels.suits_kernel(x, weight, bias)

    def forward(self, x, weight, bias=None):
        xp = get_array_module(x)
        self.has_bias = True
        self.save(x=x, weight=weight)
        z = as_rows(x) @ weight.T
        y = xp.empty_like(z)
        kind = np.int32(KIND[self.activation])
        kernels.launch_flat(SOURCE, "bias_activation", y,
                            (z, xp.ascontiguousarray(bias), np.int64(y.size), np.int64(y.shape[1]), kind, y))
        self.save(pre_activation=z)  # z + b, written there by the kernel
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        xp, z = get_array_module(g), self.pre_activation
        g = xp.ascontiguousarray(as_rows(g))
        grad_z = z if self.may_overwrite_saved else xp.empty_like(z)  # the kernel reads z[i], then writes it
        kind = np.int32(KIND[self.activation])
        kernels.launch_flat(SOURCE, "activation_backward", z, (g, z, np.int64(z.size), kind, grad_z))
        grad_x = (grad_z @ self.weight).reshape(self.x.shape)
        return grad_x, grad_z.T @ as_rows(self.x), grad_z.sum(axis=0)
