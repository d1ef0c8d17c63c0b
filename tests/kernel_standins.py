"""NumPy stand-ins for the element-wise CUDA kernels that ops launch with
``backend.launch_flat``, each written from its .cu source: the same arguments in the same
order, the same per-element formula, the same flat indexing. With ``kernels_on_the_cpu``
an op's fused-kernel path runs on NumPy arrays, so the tests check on any machine what
that path does around its kernel (the arguments it passes, what it keeps between forward
and backward, which arrays it overwrites). The kernels' own arithmetic is checked on the
host (tests/test_kernels.py) and on a GPU (the gpu tests)."""
import numpy as np

from tests.helpers import philox_draws
from tinygrad_nlp import backend
from tinygrad_nlp.ops import dropout as dropout_op
from tinygrad_nlp.ops import linear as linear_op
from tinygrad_nlp.ops.elementwise import ACTIVATIONS


def dropout(x, n, threshold, scale, k0, k1, offset, y):  # ops/dropout.cu
    keep = philox_draws(int(n), int(k0), int(k1), int(offset)) >= threshold
    y.reshape(-1)[:] = np.where(keep, x.reshape(-1) * scale, 0)


def adam(p, g, m, v, n, b1, one_minus_b1, b2, one_minus_b2, step_size, eps, wd_l2, shrink):  # adam.cu
    p, g, m, v = (a.reshape(-1) for a in (p, g, m, v))
    assert p.size == g.size == m.size == v.size == n
    param = p * shrink
    grad = g + wd_l2 * p
    m[:] = m * b1 + grad * one_minus_b1
    v[:] = v * b2 + grad * grad * one_minus_b2
    param -= m / (np.sqrt(v) + eps) * step_size
    p[:] = param


_ACTIVATION_OF_KIND = {1: "relu", 2: "gelu", 3: "gelu_tanh"}  # ops/bias_activation.cu's `kind`


def bias_activation(z, bias, n, width, kind, y):  # ops/bias_activation.cu, forward
    flat_z = z.reshape(-1)
    flat_z += bias[np.arange(int(n)) % int(width)]
    y.reshape(-1)[:] = ACTIVATIONS[_ACTIVATION_OF_KIND[int(kind)]].forward(flat_z)[0]


def activation_backward(g, z, n, kind, grad_z):  # ops/bias_activation.cu, backward
    activation = ACTIVATIONS[_ACTIVATION_OF_KIND[int(kind)]]
    flat_z = z.reshape(-1).copy()
    slope = activation.backward(np.ones(int(n), z.dtype), *activation.forward(flat_z)[1])
    grad_z.reshape(-1)[:] = g.reshape(-1) * slope


STANDINS = {"dropout": dropout, "adam": adam, "bias_activation": bias_activation,
            "activation_backward": activation_backward}
MODULES = (backend, dropout_op, linear_op)  # where launch_flat and use_fused_kernel are looked up


def kernels_on_the_cpu(monkeypatch, names):
    """Switch the fused kernels ``names`` on for NumPy arrays, run by their stand-ins."""
    def use_fused_kernel(name, *arrays):
        return name in names and len({a.dtype for a in arrays}) == 1

    def launch_flat(source_path, name, x, args, items_per_thread=1):
        STANDINS[name](*args)

    for module in MODULES:
        monkeypatch.setattr(module, "use_fused_kernel", use_fused_kernel)
        monkeypatch.setattr(module, "launch_flat", launch_flat)
