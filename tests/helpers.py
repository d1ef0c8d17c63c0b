"""Helpers shared by the tests: random float64 Tensors, both gradcheck modes, PyTorch,
and the example and docs/ scripts as modules."""
import functools
import importlib.util
import os
import signal
import sys
import time

import numpy as np
import pytest

from tinygrad_nlp import Tensor, backend
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


DOCS = os.path.join(os.path.dirname(EXAMPLES), "docs")


@functools.cache
def load_docs_script(name):
    """docs/<name>.py as a module. docs/ is not a package: run from their folder, its scripts
    import each other by bare name (check.py imports breaks), so breaks is registered under
    that name first."""
    if name != "breaks":
        load_docs_script("breaks")
    spec = importlib.util.spec_from_file_location(name if name == "breaks" else f"docs_{name}",
                                                  os.path.join(DOCS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (a dataclass looks its module up while it is made)
    spec.loader.exec_module(module)
    return module


def philox4x32_10(counters, key):
    """NumPy reference of kernels/cuda/philox.cuh, vectorised over ``counters`` (an (n, 4) uint32
    array) with one ``key`` (two uint32): the (n, 4) random words. The tests check it
    against Random123's known answers, then the GPU kernels against it, bit for bit."""
    c = [np.asarray(counters, dtype=np.uint64)[:, i].copy() for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    low = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & low, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & low]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & low, (k1 + np.uint64(0xBB67AE85)) & low
    return np.stack(c, axis=1).astype(np.uint32)


def philox_draws(n, key0, key1, draw, first):
    """The ``n`` random words kernels/cuda/dropout.cu draws for draw ``draw`` at element
    ``first`` of the global batch: element i gets word (first + i) % 4 of the Philox call
    at counter ((first + i) // 4, draw)."""
    first_call = int(first) // 4
    calls = -(-(int(first) + n) // 4) - first_call
    counter = np.uint64(first_call) + np.arange(calls, dtype=np.uint64)
    counters = np.stack([counter & np.uint64(0xFFFFFFFF), counter >> np.uint64(32),
                         np.full_like(counter, draw), np.zeros_like(counter)], axis=1)
    skip = int(first) % 4
    return philox4x32_10(counters, (key0, key1)).reshape(-1)[skip:skip + n]


def philox_keep_mask(n, p, key0, key1, draw, first):
    """The keep mask kernels/cuda/dropout.cu draws for ``n`` elements of draw ``draw`` at
    element ``first`` of the global batch (``backend.philox_place``)."""
    return philox_draws(n, key0, key1, draw, first) >= np.uint32(min(round(p * 2 ** 32), 2 ** 32 - 1))


def cuda_leaves(*arrays):
    """The arrays as CuPy Tensors that want gradients."""
    tensors = [Tensor(a).to("cuda") for a in arrays]
    for t in tensors:
        t.requires_grad = True
    return tensors


def assert_kernel_matches_generic(monkeypatch, kernel, run, dtype, tol=None):
    """``run(fused)`` (-> arrays) once on the textbook ops on CuPy and once with the CUDA
    ``kernel`` (a name, or a set of names) switched on: the same results within float
    rounding (``tol`` or a default per dtype)."""
    results = {}
    names = {kernel} if isinstance(kernel, str) else set(kernel)
    for fused in (False, True):
        monkeypatch.setattr(backend.kernels, "fused_kernels", names if fused else set())
        results[fused] = [backend.asnumpy(a) for a in run(fused)]
    tol = tol or (dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12))
    for generic, with_kernel in zip(results[False], results[True], strict=True):
        np.testing.assert_allclose(with_kernel, generic, **tol)


def kill_a_rank_after_a_checkpoint(job, path, find_rank, every=5):
    """Wait for ``job`` (an mpirun Popen saving to ``path`` every ``every`` steps) to write
    a checkpoint, kill the rank ``find_rank()`` names, and check that the job ends within
    30 s with a failure and that the checkpoint loads, at a step it saves."""
    from tinygrad_nlp import checkpoint
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert path.exists(), "no checkpoint was written"
    pid = find_rank()
    assert pid is not None, "the rank to kill was not found"
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    job.communicate(timeout=60)
    assert job.returncode != 0 and time.time() - killed < 30
    meta, arrays = checkpoint.read(path)
    assert meta["extra"]["step"] % every == 0 and any(k.startswith("model/") for k in arrays)


def tiny_bert_checkpoint(folder, layers=1, reviews=100, vocab_size=200):
    """A tiny BERT masked-LM checkpoint in ``folder``: random weights and a WordPiece
    vocabulary trained on the built-in reviews."""
    from tinygrad_nlp import manual_seed
    from tinygrad_nlp.data import WordPieceTokenizer, load_reviews
    from tinygrad_nlp.models import BertConfig, BertForMaskedLM
    texts, *_ = load_reviews("builtin", reviews, 10, seed=0)
    tokenizer = WordPieceTokenizer.train(texts, vocab_size=vocab_size)
    manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def assert_same_backward_as_torch(ours, theirs, leaves, rng, rtol=1e-8, atol=1e-10):
    """``ours`` (a Tensor) and ``theirs`` (a torch tensor) equal, and after both go back
    from the same random gradient, each (our leaf, torch leaf) pair's gradients equal."""
    assert_close(ours, theirs)
    g = rng.standard_normal(ours.shape)
    ours.backward(g)
    theirs.backward(torch.tensor(g))
    for a, t in leaves:
        assert_close(a.grad, t.grad, rtol=rtol, atol=atol)
