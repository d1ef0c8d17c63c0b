"""Make the guide's pictures of one encoder layer's backward graph (pre-norm and post-norm),
of a tiny classifier head's graph with values and gradients, and its table of what each op
saves, from the code itself.

    python docs/graphs.py           # rewrite docs/images/encoder_layer_*.{dot,svg} and the table in backward.md
    python docs/graphs.py --check   # exit 1 if any of them is out of date (tests/test_docs.py runs this)

The SVGs need Graphviz's dot; without it the DOT files and the table are still made and
checked, and the SVGs are left as they are.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys

import numpy as np

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor, graph, manual_seed, reference_ops
from tinygrad_nlp.nn import TransformerEncoderLayer
from tinygrad_nlp.testing import CASES, small_inputs

DOCS = pathlib.Path(__file__).resolve().parent
IMAGES = DOCS / "images"
GUIDE = DOCS / "backward.md"
BEGIN, END = "<!-- saved-table: made by docs/graphs.py -->", "<!-- end of saved-table -->"

WHY = {  # op class -> why its backward needs what it saves
    "Add": "nothing: the gradient passes through (un-broadcast)",
    "Sub": "nothing: the gradient passes through, negated for b",
    "Mul": "both inputs: d(ab)/da = b, d(ab)/db = a",
    "Div": "b and the output: dL/da = g/b, dL/db = -g y/b",
    "Pow": "both inputs and the output",
    "Exp": "the output: d e^x = e^x",
    "Log": "x: d log x = 1/x",
    "ReLU": "the mask x > 0 (1 byte per element)",
    "GELUTanh": "x and tanh(u), both in the derivative",
    "GELU": "the derivative Phi(x) + x phi(x) itself, made in the forward from Phi and phi",
    "Tanh": "the output: 1 - y^2",
    "Softmax": "the output y: y (g - sum g y)",
    "LogSoftmax": "the output: softmax = exp(y)",
    "CrossEntropy": "log-probabilities, the scored rows and targets: softmax - onehot",
    "LinearCrossEntropy": "the scored rows of x, W and the probabilities P: dX = (P - onehot) g / n",
    "LayerNorm": "x, weight, mean and 1/std per row: x-hat is recomputed",
    "RMSNorm": "x, weight and 1/rms per row: x-hat is recomputed",
    "RotaryEmbedding": "cos and sin of the angles (T x Dh), not x: the backward turns g back",
    "SiLU": "the derivative s (1 + x (1 - s)) itself, s = sigmoid(x)",
    "SwiGLU": "gate and up: sigmoid(gate) is made again in the backward",
    "GroupedQueryAttention": "as attention, with k and v repeated for each query head of their group",
    "Dropout": "the boolean mask (1 byte per element)",
    "ScaledDotProductAttention": "q, k, v and the probabilities (and the boolean dropout mask)",
    "PackedSelfAttention": "q, k, v (views of the input) and the probabilities (and the boolean dropout mask)",
    "RaggedSelfAttention": "per sequence, the probabilities (and the dropout mask); q, k, v are views",
    "Linear": "x and W: dL/dx = G W, dL/dW = G^T x; with an activation, what it keeps (relu: the mask)",
    "MatMul": "both inputs: dL/da = G b^T, dL/db = a^T G",
    "Embedding": "nothing as an array: the ids are a setting of the node",
    "Neg": "nothing: -g",
    "Reshape": "nothing: the input shape, a setting",
    "Transpose": "nothing: the axes, a setting",
    "GetItem": "nothing: the index and input shape (the gradient is scattered back)",
    "ScatterRows": "nothing: the row indices, a setting (the backward picks those rows of g)",
    "Concatenate": "nothing: the split points",
    "Sum": "nothing: the axes and input shape (the gradient is broadcast back)",
    "Mean": "nothing: as sum, divided by the count",
}


def encoder_layer_dot(norm_first: bool) -> str:
    """The DOT of one small encoder layer's graph: batch 2, sequence 4, width 8, 2 heads,
    feed-forward 16, dropout 0.1, a padding mask, the loss the mean of the output."""
    manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.1, norm_first=norm_first)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32), requires_grad=True)
    mask = np.array([[True, True, True, True], [True, True, False, False]])
    loss = layer(x, mask).mean()
    return graph.to_dot(loss, dict(layer.named_parameters(), input=x))


def values_and_gradients_dot() -> str:
    """The DOT of a tiny classifier head's graph with each node's value and the gradient the
    backward sends into it (micrograd's picture): 2 examples, 3 features, 2 classes."""
    x = Tensor(np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]]))
    weight = Tensor(np.array([[0.5, -0.25, 1.0], [-0.5, 0.75, 0.0]]), requires_grad=True)
    bias = Tensor(np.array([0.1, -0.1]), requires_grad=True)
    with reference_ops():  # what the textbook ops save
        logits = F.linear(x, weight, bias)
        loss = F.cross_entropy(logits, np.array([0, 1]))
    return graph.to_dot(loss, dict(x=x, weight=weight, bias=bias, logits=logits, loss=loss), values=True)


def saved_by_op() -> dict:
    """{op name: the names of what its forward saved} over the case table's calls."""
    saved = {}
    for name, case in CASES.items():
        tensors, constants = small_inputs(name)
        out = case.ours(constants, *tensors)
        for fn in graph._functions(out)[1]:
            saved.setdefault(fn.name, ", ".join(fn.saved_arrays()) or "—")
    return saved


def saved_table() -> str:
    """Markdown: each op of the case table, what its textbook forward saves (names) and
    why, and what the default CPU path saves where that differs."""
    with reference_ops():
        textbook = saved_by_op()
    default = saved_by_op()
    rows = [f"| `{op}` | {saves} | {WHY.get(op, '')} | {default[op] if default[op] != saves else ''} |"
            for op, saves in textbook.items()]
    return "\n".join([BEGIN, "| op (Function) | saves | why | the CPU path saves instead |", "|---|---|---|---|"]
                     + sorted(rows) + [END])


def outputs() -> dict:
    """{path: text} of every generated file, the guide with its table brought up to date."""
    files = {IMAGES / f"encoder_layer_{kind}.dot": encoder_layer_dot(kind == "pre_norm")
             for kind in ("pre_norm", "post_norm")}
    files[IMAGES / "values_and_gradients.dot"] = values_and_gradients_dot()
    guide = GUIDE.read_text(encoding="utf-8")
    files[GUIDE] = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: saved_table(), guide, flags=re.S)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = p.parse_args(argv)
    stale = [path for path, text in outputs().items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(DOCS.parent)} (run python docs/graphs.py)")
        return 1 if stale else 0
    IMAGES.mkdir(exist_ok=True)
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
        if path.suffix == ".dot" and shutil.which("dot"):
            import graphviz
            path.with_suffix(".svg").write_bytes(graphviz.Source(text).pipe(format="svg"))
    print(f"wrote {', '.join(str(p.relative_to(DOCS.parent)) for p in outputs())} and the SVGs"
          + ("" if shutil.which("dot") else " (not the SVGs: Graphviz's dot is not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
