"""NumPy stand-ins for the CUDA kernels of kernels/cuda, each written from its .cu source:
the same arguments in the same order, the same formula, the same indexing (flat for the
element-wise kernels ``launch_flat`` runs, one row per thread block for those
``launch_per_row`` runs). With ``kernels_on_the_cpu`` an op's CUDA class runs on
NumPy arrays, so the tests check on any machine what that path does around its kernel
(the arguments it passes, what it keeps between forward and backward, which arrays it
overwrites). The kernels' own arithmetic is checked on the host where it compiles for
one (tests/test_kernels.py) and on a GPU (the gpu tests)."""
import collections

import numpy as np

from tests.helpers import philox_draws
from tinygrad_nlp.backend import kernels
from tinygrad_nlp.kernels.cuda import bias_activation as bias_activation_kernel
from tinygrad_nlp.ops.activations import ACTIVATIONS


def dropout(x, n, threshold, scale, k0, k1, draw, first, y):  # kernels/cuda/dropout.cu
    keep = philox_draws(int(n), int(k0), int(k1), int(draw), int(first)) >= threshold
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


_ACTIVATION_OF_KIND = {kind: name for name, kind in bias_activation_kernel.KIND.items()}  # the .cu's `kind`


def bias_activation(z, bias, n, width, kind, y):  # kernels/cuda/bias_activation.cu, forward
    flat_z = z.reshape(-1)
    flat_z += bias[np.arange(int(n)) % int(width)]
    y.reshape(-1)[:] = ACTIVATIONS[_ACTIVATION_OF_KIND[int(kind)]].forward(flat_z)[0]


def activation_backward(g, z, n, kind, grad_z):  # kernels/cuda/bias_activation.cu, backward
    activation = ACTIVATIONS[_ACTIVATION_OF_KIND[int(kind)]]
    flat_z = z.reshape(-1).copy()
    slope = activation.backward(np.ones(int(n), z.dtype), *activation.forward(flat_z)[1])
    grad_z.reshape(-1)[:] = g.reshape(-1) * slope


def _rows(width, *arrays):
    return [a.reshape(-1, int(width)) for a in arrays]


def exp_rows(x, width, masked_rows, out, shift, total):  # kernels/cuda/softmax.cu
    x, out = _rows(width, x, out)
    m = np.where(np.isnan(x).any(axis=1), np.nan, x.max(axis=1, initial=-np.inf))  # nan_max
    if masked_rows:
        m[np.isneginf(m)] = 0
    out[:] = np.exp(x - m[:, None])
    shift.reshape(-1)[:], total.reshape(-1)[:] = m, out.sum(axis=1)


def softmax_backward(y, g, width, grad):  # kernels/cuda/softmax.cu
    y, g, grad = _rows(width, y, g, grad)
    grad[:] = y * (g - (g * y).sum(axis=1, keepdims=True))


def layer_norm_forward(x, weight, bias, width, eps, y, mean, rstd):  # kernels/cuda/layernorm.cu
    x, y = _rows(width, x, y)
    mu = x.mean(axis=1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + eps)
    y[:] = (x - mu) * r * weight + bias
    mean.reshape(-1)[:], rstd.reshape(-1)[:] = mu[:, 0], r[:, 0]


def layer_norm_backward(g, x, weight, mean, rstd, width, grad_x):  # kernels/cuda/layernorm.cu
    g, x, grad_x = _rows(width, g, x, grad_x)
    mu, r = mean.reshape(-1, 1), rstd.reshape(-1, 1)
    dxhat, xhat = g * weight, (x - mu) * r
    grad_x[:] = r * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))


def segment_sum(values, order, starts, ends, n_segments, width, sums):  # kernels/cuda/embedding_backward.cu
    values, sums = _rows(width, values, sums)
    assert len(starts) == len(ends) == int(n_segments)
    for segment, (start, end) in enumerate(zip(starts, ends)):
        total = np.zeros(int(width), values.dtype)
        for j in range(start, end):  # in sorted order, as each of the kernel's threads sums
            total += values[order[j]]
        sums[segment] = total


STANDINS = {"dropout": dropout, "adam": adam, "bias_activation": bias_activation,
            "activation_backward": activation_backward, "exp_rows": exp_rows, "softmax_backward": softmax_backward,
            "layer_norm_forward": layer_norm_forward, "layer_norm_backward": layer_norm_backward,
            "segment_sum": segment_sum}


def kernels_on_the_cpu(monkeypatch, names):
    """Switch the fused kernels ``names`` on and take NumPy arrays for CuPy ones, each
    launch run by its stand-in: the one dispatch (``backend.kernels``) then picks the
    classes registered for "cuda" (kernels/cuda) as it would on a GPU, and the
    optimizer's ``kernels.dispatch`` its kernel path. Returns a Counter of the kernels
    launched, by name."""
    launched = collections.Counter()

    def suits_kernel(*args):
        found = [a for a in args if isinstance(a, np.ndarray)]
        return bool(found) and len({a.dtype for a in found if a.dtype.kind == "f"}) == 1 and found[0].size > 0

    def kernel_suits(name, *args):
        found = [a for a in args if isinstance(a, np.ndarray)]
        return name in names and len({a.dtype for a in found if a.dtype.kind == "f"}) == 1

    def load_kernel(source_path, name):
        def kernel(grid, block, args, shared_mem=0):
            launched[name.rsplit("_", 1)[0]] += 1  # the name without its _f32 / _f64
            STANDINS[name.rsplit("_", 1)[0]](*args)
        return kernel

    monkeypatch.setattr(kernels, "fused_kernels", set(names))
    monkeypatch.setattr(kernels, "device_of_call", lambda arrays: "cuda")
    monkeypatch.setattr(kernels, "suits_kernel", suits_kernel)
    monkeypatch.setattr(kernels, "kernel_suits", kernel_suits)
    monkeypatch.setattr(kernels, "load_kernel", load_kernel)  # what every launcher asks for the kernel
    return launched
