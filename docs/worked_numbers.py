"""Print the worked examples of docs/backward.md (layer norm, attention and causal attention, sizes 2-4).

    python docs/worked_numbers.py            # prints the Markdown blocks
    python docs/worked_numbers.py --check    # exits 1 if docs/backward.md differs

The tests run --check, so the numbers in the guide cannot drift from the code.
"""
import os
import re
import sys

import numpy as np

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor

GUIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backward.md")


def fmt(a):
    return np.array2string(np.asarray(a), precision=4, suppress_small=True, floatmode="fixed")


def layer_norm_example():
    x = Tensor(np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 0.0]]), requires_grad=True)
    w = Tensor(np.array([1.0, 0.5, 2.0]), requires_grad=True)
    b = Tensor(np.array([0.0, 0.1, -0.1]), requires_grad=True)
    g = np.array([[1.0, -1.0, 0.5], [0.5, 0.0, -0.5]])
    y = F.layer_norm(x, w, b)
    y.backward(g)
    mean = x.data.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(x.data.var(-1, keepdims=True) + 1e-5)
    xhat = (x.data - mean) * rstd
    dxhat = g * w.data
    lines = [
        f"x       = {fmt(x.data)}", f"w       = {fmt(w.data)}", f"b       = {fmt(b.data)}",
        f"mean    = {fmt(mean.ravel())}", f"rstd    = {fmt(rstd.ravel())}", f"xhat    = {fmt(xhat)}",
        f"y       = {fmt(y.data)}", f"g       = {fmt(g)}", f"dxhat   = g * w = {fmt(dxhat)}",
        f"mean(dxhat)        = {fmt(dxhat.mean(-1))}", f"mean(dxhat * xhat) = {fmt((dxhat * xhat).mean(-1))}",
        f"dL/dx   = {fmt(x.grad)}", f"dL/dw   = {fmt(w.grad)}", f"dL/db   = {fmt(b.grad)}",
    ]
    return "\n".join(lines)


def attention_inputs():
    """q, k, v (1, 1, 3, 2) of both attention examples, as Tensors wanting gradients."""
    rows = ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], [[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]])
    return [Tensor(np.array([[r]]), requires_grad=True) for r in rows]


def attention_example():
    q, k, v = attention_inputs()
    mask = np.array([[True, True, False]])
    g = np.ones((1, 1, 3, 2))
    out = F.scaled_dot_product_attention(q, k, v, mask=mask)
    out.backward(g)
    scores = q.data[0, 0] @ k.data[0, 0].T / np.sqrt(2)
    probs = np.exp(scores[:, :2]) / np.exp(scores[:, :2]).sum(-1, keepdims=True)
    lines = [
        "B=1, H=1, T=3, Dh=2; key 2 is padding (mask = [True, True, False])",
        f"scores  = q k^T / sqrt(2) = {fmt(scores)}",
        f"P       = {fmt(np.concatenate([probs, np.zeros((3, 1))], 1))}",
        f"out     = P v = {fmt(out.data[0, 0])}",
        f"dL/dq   = {fmt(q.grad[0, 0])}", f"dL/dk   = {fmt(k.grad[0, 0])}", f"dL/dv   = {fmt(v.grad[0, 0])}",
    ]
    return "\n".join(lines)


def causal_attention_example():
    q, k, v = attention_inputs()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(np.ones((1, 1, 3, 2)))
    scores = q.data[0, 0] @ k.data[0, 0].T / np.sqrt(2)
    allowed = np.tril(np.ones((3, 3), dtype=bool))
    e = np.where(allowed, np.exp(scores - scores.max(-1, keepdims=True)), 0)
    lines = [
        "B=1, H=1, T=3, Dh=2, the same q, k, v, no padding, is_causal=True (query i sees keys 0..i)",
        f"scores  = q k^T / sqrt(2), later keys -inf = {fmt(np.where(allowed, scores, -np.inf))}",
        f"P       = {fmt(e / e.sum(-1, keepdims=True))}",
        f"out     = P v = {fmt(out.data[0, 0])}",
        f"dL/dq   = {fmt(q.grad[0, 0])}", f"dL/dk   = {fmt(k.grad[0, 0])}", f"dL/dv   = {fmt(v.grad[0, 0])}",
    ]
    return "\n".join(lines)


BLOCKS = {"layernorm": layer_norm_example, "attention": attention_example, "causal_attention": causal_attention_example}


def render(name):
    return f"<!-- worked:{name} -->\n```\n{BLOCKS[name]()}\n```\n<!-- /worked:{name} -->"


def main():
    text = open(GUIDE, encoding="utf-8").read()
    expected = text
    for name in BLOCKS:
        expected = re.sub(rf"<!-- worked:{name} -->.*?<!-- /worked:{name} -->", lambda _, name=name: render(name), expected,
                          flags=re.S)
    if "--check" in sys.argv:
        if expected != text:
            print("docs/backward.md is out of date: run python docs/worked_numbers.py --write")
            return 1
        print("worked numbers match the code")
        return 0
    if "--write" in sys.argv:
        open(GUIDE, "w", encoding="utf-8").write(expected)
        return 0
    for name in BLOCKS:
        print(render(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
