"""Helpers shared by the tests: random float64 Tensors, both gradcheck modes, PyTorch,
and the example scripts as modules."""
import importlib.util
import os

import numpy as np
import pytest

from tinygrad_nlp import Tensor
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error

try:
    import torch
except ImportError:  # the PyTorch comparisons skip without it
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def tensor(rng, *shape, requires_grad=True, scale=1.0):
    return Tensor(rng.standard_normal(shape) * scale, requires_grad=requires_grad)


def check_both_modes(fn, inputs, **kwargs):
    """Random-direction and element-wise finite differences, and a relative error <= 1e-6."""
    assert gradcheck(fn, inputs, mode="random", n_directions=4, **kwargs)
    assert gradcheck(fn, inputs, mode="full", **kwargs)
    assert max_relative_error(fn, inputs) <= 1e-6


def to_torch(t):
    return torch.tensor(t.numpy() if isinstance(t, Tensor) else np.asarray(t), requires_grad=True)


def assert_close(a, b, rtol=1e-9, atol=1e-12):
    a = a.numpy() if isinstance(a, Tensor) else a
    b = b.numpy() if isinstance(b, Tensor) else b
    b = b.detach().numpy() if torch is not None and isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    """examples/<name>.py as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
