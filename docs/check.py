"""Run the float64 finite-difference checks of one op (or all) from docs/backward.md.

    python docs/check.py layer_norm
    python docs/check.py all

The ops' inputs come from the shared case table, ``tinygrad_nlp.testing.CASES``; the
two encoder-layer checks run a whole layer and its parameters.
"""
import sys

import numpy as np

from tinygrad_nlp import Tensor, manual_seed, nn
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error
from tinygrad_nlp.testing import CASES, small_inputs


def op_check(name):
    inputs, constants = small_inputs(name)
    return (lambda *x: CASES[name].ours(constants, *x)), inputs


def encoder_layer_check(norm_first):
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(6, 2, 8, dropout=0.0, norm_first=norm_first).to(dtype=np.float64)
    mask = np.array([[True, True, False]])
    x = Tensor(np.random.default_rng(0).standard_normal((1, 3, 6)), requires_grad=True)
    return (lambda x, *params: layer(x, mask)), [x] + layer.parameters()


CHECKS = {name: (lambda name=name: op_check(name)) for name in CASES}
CHECKS["encoder_pre_norm"] = lambda: encoder_layer_check(True)
CHECKS["encoder_post_norm"] = lambda: encoder_layer_check(False)


def main(names):
    names = list(CHECKS) if names in ([], ["all"]) else names
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown check(s) {', '.join(unknown)}; choose from: all, {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    for name in names:
        fn, inputs = CHECKS[name]()
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
