"""Run the float64 finite-difference checks of one op (or all) from docs/backward.md.

    python docs/check.py layer_norm
    python docs/check.py all
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinygrad_nlp.functional as F  # noqa: E402
from tinygrad_nlp import Tensor, manual_seed, nn  # noqa: E402
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error  # noqa: E402


def t(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


def dropped(x):
    manual_seed(0)  # the same mask on every evaluation
    return F.dropout(x, 0.3)


def encoder_layer(norm_first):
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(6, 2, 8, dropout=0.0, norm_first=norm_first).to(dtype=np.float64)
    mask = np.array([[True, True, False]])
    return (lambda x, *p: layer(x, mask)), layer.parameters()


def cases(rng):
    ids = np.array([[1, 3, 1], [0, 3, 3]])
    targets = np.array([2, -100, 0, 4])
    mask = np.array([[True, True, False, False], [True, False, False, False]])
    pre, pre_params = encoder_layer(True)
    post, post_params = encoder_layer(False)
    return {
        "embedding": (lambda w: F.embedding(ids, w), [t(rng, 5, 3)]),
        "linear": (F.linear, [t(rng, 2, 3, 4), t(rng, 5, 4), t(rng, 5)]),
        "softmax": (F.softmax, [t(rng, 3, 5)]),
        "cross_entropy": (lambda x: F.cross_entropy(x, targets), [t(rng, 4, 5)]),
        "linear_cross_entropy": (lambda x, w, b: F.linear_cross_entropy(x, w, targets, bias=b),
                                 [t(rng, 4, 3), t(rng, 5, 3), t(rng, 5)]),
        "layer_norm": (F.layer_norm, [t(rng, 3, 6), t(rng, 6), t(rng, 6)]),
        "dropout": (dropped, [t(rng, 4, 5)]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask), [t(rng, 2, 2, 4, 3)] +
                      [t(rng, 2, 2, 4, 3), t(rng, 2, 2, 4, 3)]),
        "self_attention": (lambda x: F.self_attention(x, 2, mask=mask[:, :3]), [t(rng, 2, 3, 12)]),
        "encoder_pre_norm": (pre, [t(rng, 1, 3, 6)] + pre_params),
        "encoder_post_norm": (post, [t(rng, 1, 3, 6)] + post_params),
    }


def main(names):
    all_cases = cases(np.random.default_rng(0))
    names = list(all_cases) if names in ([], ["all"]) else names
    for name in names:
        fn, inputs = all_cases[name]
        gradcheck(fn, inputs, mode="random", n_directions=5)
        mode = "random-direction"
        if sum(x.size for x in inputs) <= 500:
            gradcheck(fn, inputs, mode="full")
            mode += " and element-wise"
        error = max_relative_error(fn, inputs)
        verdict = "ok" if error <= 1e-6 else "FAILED"
        print(f"{name}: {mode} gradchecks passed; max relative error {'< 1e-6' if error <= 1e-6 else error} -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
