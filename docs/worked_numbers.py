"""Print the worked examples of docs/backward.md (cross-entropy, layer norm, attention and causal
attention, RMSNorm, rotary embeddings, SwiGLU, grouped-query attention; sizes 2-5).

    python docs/worked_numbers.py            # prints the Markdown blocks
    python docs/worked_numbers.py --check    # exits 1 if docs/backward.md differs

The tests run --check, so the numbers in the guide cannot drift from the code.
"""
import os
import re
import sys

import numpy as np

import tinygrad_nlp.functional as F
from tinygrad_nlp import Tensor, manual_seed, nn, reference_ops
from tinygrad_nlp.tensor import graph_order

GUIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backward.md")


def fmt(a):
    return np.array2string(np.asarray(a), precision=4, suppress_small=True, floatmode="fixed")


def engine_trace():
    """One pre-norm encoder layer on a tiny input: every node in the order backward() visits it."""
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, norm_first=True).to(dtype=np.float64)
    x = Tensor(np.random.default_rng(0).standard_normal((1, 3, 4)), requires_grad=True)
    loss = layer(x, np.array([[True, True, False]])).mean()
    names = {id(t): name for name, t in dict(layer.named_parameters(), x=x).items()}
    order = [node for node in graph_order(loss.creator) if not isinstance(node, Tensor)]
    number = {id(node): i + 1 for i, node in enumerate(order)}
    lines = ["batch 1, sequence 3, width 4, 2 heads, feed-forward 8, the last key (position 2) padding; "
             "loss = mean of the output",
             "node  op                   output     saves                          its inputs come from"]
    for node in order:
        parents = ", ".join("-" if p is None else names[id(p)] if isinstance(p, Tensor) else f"#{number[id(p)]}"
                            for p in node.parents)
        saved = ", ".join(node.saved_arrays()) or "-"
        lines.append(f"#{number[id(node)]:<4} {node.name:20} {str(node.output_shape):10} {saved:30} {parents}")
    loss.backward()
    lines.append(f"after backward(): x.grad {x.grad.shape}, every parameter's .grad set, every node released: "
                 f"{all(node.released for node in order)}")
    return "\n".join(lines)


def cross_entropy_example():
    x = Tensor(np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]]), requires_grad=True)
    targets = np.array([1, -100])
    loss = F.cross_entropy(x, targets)
    loss.backward()
    m = x.data.max(-1, keepdims=True)
    log_p = x.data - m - np.log(np.exp(x.data - m).sum(-1, keepdims=True))
    lines = [
        "N=2 rows, C=3 classes; row 1's target is ignored (-100), so n = 1",
        f"X       = {fmt(x.data)}", f"t       = {targets}",
        f"log P   = X - logsumexp(X) = {fmt(log_p)}",
        f"L       = -log P[0, 1] / n = {float(loss.data):.4f}",
        f"P       = {fmt(np.exp(log_p))}",
        f"onehot  = {fmt(np.eye(3)[[1, 0]] * [[1], [0]])}   (row 1 scores nothing)",
        f"dL/dX   = (P - onehot) * scored / n = {fmt(x.grad)}",
    ]
    return "\n".join(lines)


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
    p = np.concatenate([probs, np.zeros((3, 1))], 1)
    grad_p = g[0, 0] @ v.data[0, 0].T
    grad_s = p * (grad_p - (grad_p * p).sum(-1, keepdims=True))
    lines = [
        "B=1, H=1, T=3, Dh=2; key 2 is padding (mask = [True, True, False]); no dropout, so P' = P",
        f"q       = {fmt(q.data[0, 0])}", f"k       = {fmt(k.data[0, 0])}", f"v       = {fmt(v.data[0, 0])}",
        f"scores  = q k^T / sqrt(2) (key 2 then set to -inf) = {fmt(scores)}",
        f"P       = {fmt(p)}",
        f"out     = P v = {fmt(out.data[0, 0])}",
        f"g       = dL/dout = {fmt(g[0, 0])}",
        f"dP      = g v^T = {fmt(grad_p)}",
        f"dS      = P * (dP - rowsum(dP * P)) = {fmt(grad_s)}",
        f"dL/dq   = dS k / sqrt(2) = {fmt(q.grad[0, 0])}", f"dL/dk   = dS^T q / sqrt(2) = {fmt(k.grad[0, 0])}",
        f"dL/dv   = P^T g = {fmt(v.grad[0, 0])}",
    ]
    return "\n".join(lines)


def causal_attention_example():
    q, k, v = attention_inputs()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(np.ones((1, 1, 3, 2)))
    scores = q.data[0, 0] @ k.data[0, 0].T / np.sqrt(2)
    allowed = np.tril(np.ones((3, 3), dtype=bool))
    e = np.where(allowed, np.exp(scores - scores.max(-1, keepdims=True)), 0)
    p = e / e.sum(-1, keepdims=True)
    grad_p = np.ones((3, 2)) @ v.data[0, 0].T
    lines = [
        "B=1, H=1, T=3, Dh=2, the same q, k, v, no padding, is_causal=True (query i sees keys 0..i)",
        f"scores  = q k^T / sqrt(2), later keys -inf = {fmt(np.where(allowed, scores, -np.inf))}",
        f"P       = {fmt(p)}",
        f"out     = P v = {fmt(out.data[0, 0])}",
        f"dS      = P * (dP - rowsum(dP * P)) = {fmt(p * (grad_p - (grad_p * p).sum(-1, keepdims=True)))}"
        "   (row 0: P = [1 0 0], so dS = dP_00 - dP_00 = 0)",
        f"dL/dq   = {fmt(q.grad[0, 0])}", f"dL/dk   = {fmt(k.grad[0, 0])}", f"dL/dv   = {fmt(v.grad[0, 0])}",
    ]
    return "\n".join(lines)


def rms_norm_example():
    x = Tensor(np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 0.0]]), requires_grad=True)
    w = Tensor(np.array([1.0, 0.5, 2.0]), requires_grad=True)
    g = np.array([[1.0, -1.0, 0.5], [0.5, 0.0, -0.5]])
    y = F.rms_norm(x, w)
    y.backward(g)
    mean_square = (x.data ** 2).mean(-1)
    rstd = 1 / np.sqrt(mean_square + 1e-6)
    xhat = x.data * rstd[:, None]
    dxhat = g * w.data
    lines = [
        f"x       = {fmt(x.data)}", f"w       = {fmt(w.data)}",
        f"mean(x^2) = {fmt(mean_square)}", f"rstd    = {fmt(rstd)}", f"xhat    = {fmt(xhat)}",
        f"y       = {fmt(y.data)}", f"g       = {fmt(g)}", f"dxhat   = g * w = {fmt(dxhat)}",
        f"mean(dxhat * xhat) = {fmt((dxhat * xhat).mean(-1))}",
        f"dL/dx   = rstd * (dxhat - xhat * mean(dxhat * xhat)) = {fmt(x.grad)}",
        f"dL/dw   = {fmt(w.grad)}",
    ]
    return "\n".join(lines)


def rotary_example():
    x = Tensor(np.array([[[[1.0, 0.5, 2.0, 1.0]] * 3]]), requires_grad=True)
    positions = np.array([0, 1, 2])
    y = F.rotary_embedding(x, positions)
    node = y.creator
    cos, sin = node.cos, node.sin
    g = np.ones((1, 1, 3, 4))
    y.backward(g)
    lines = [
        "B=1, H=1, T=3, Dh=4, theta=10000: inv_freq = 1 / 10000^([0, 2] / 4) = [1, 0.01]; positions [0, 1, 2];",
        "pairs (0, 2) turn by the angle p, pairs (1, 3) by 0.01 p; every row x = [1, 0.5, 2, 1]",
        f"cos     = cos(concat(p f, p f)) = {fmt(cos)}", f"sin     = {fmt(sin)}",
        f"rotate_half(x) = [-x2, x1] = {fmt(np.concatenate([-x.data[0, 0, :, 2:], x.data[0, 0, :, :2]], -1))}",
        f"y       = x * cos + rotate_half(x) * sin = {fmt(y.data[0, 0])}",
        f"g       = {fmt(g[0, 0])}",
        f"dL/dx   = g * cos + [u2, -u1] with u = g * sin = {fmt(x.grad[0, 0])}",
    ]
    return "\n".join(lines)


def swiglu_example():
    gate = Tensor(np.array([-2.0, -0.5, 0.0, 1.0, 3.0]), requires_grad=True)
    up = Tensor(np.array([1.0, 2.0, 1.5, 0.5, -1.0]), requires_grad=True)
    g = np.ones(5)
    y = F.swiglu(gate, up)
    y.backward(g)
    s = 1 / (1 + np.exp(-gate.data))
    lines = [
        f"gate    = {fmt(gate.data)}", f"up      = {fmt(up.data)}",
        f"s       = sigmoid(gate) = {fmt(s)}", f"silu    = gate * s = {fmt(gate.data * s)}",
        f"silu'   = s (1 + gate (1 - s)) = {fmt(s * (1 + gate.data * (1 - s)))}",
        f"y       = silu * up = {fmt(y.data)}", f"g       = {fmt(g)}",
        f"dL/dgate = g * up * silu' = {fmt(gate.grad)}", f"dL/dup   = g * silu = {fmt(up.grad)}",
    ]
    return "\n".join(lines)


def grouped_attention_example():
    q = Tensor(np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]]]]), requires_grad=True)  # (1, 2, 2, 2)
    k = Tensor(np.array([[[[1.0, 0.0], [0.0, 2.0]]]]), requires_grad=True)                            # (1, 1, 2, 2)
    v = Tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), requires_grad=True)
    g = np.ones((1, 2, 2, 2))
    with reference_ops():  # the textbook class, which keeps P per query head
        out = F.grouped_query_attention(q, k, v)
    probs = out.creator.probs
    out.backward(g)
    k_rep, v_rep = (Tensor(np.repeat(t.data, 2, axis=1), requires_grad=True) for t in (k, v))  # one copy per query head
    F.scaled_dot_product_attention(Tensor(q.data), k_rep, v_rep).backward(g)
    grad_k_per_head, grad_v_per_head = k_rep.grad, v_rep.grad
    lines = [
        "B=1, H=2 query heads, Hkv=1 key/value head (G=2), T=2, Dh=2; no mask, g = 1",
        f"q (head 0, head 1) = {fmt(q.data[0])}", f"k       = {fmt(k.data[0, 0])}", f"v       = {fmt(v.data[0, 0])}",
        f"P (per query head) = {fmt(probs[0])}",
        f"out     = {fmt(out.data[0])}",
        f"dK' (per query head) = {fmt(grad_k_per_head[0])}",
        f"dL/dk   = dK'_0 + dK'_1 = {fmt(k.grad[0, 0])}",
        f"dV' (per query head) = {fmt(grad_v_per_head[0])}",
        f"dL/dv   = dV'_0 + dV'_1 = {fmt(v.grad[0, 0])}",
        f"dL/dq   = {fmt(q.grad[0])}   (as without grouping: each query head sees its one copy)",
    ]
    return "\n".join(lines)


BLOCKS = {"engine_trace": engine_trace, "cross_entropy": cross_entropy_example, "layernorm": layer_norm_example,
          "attention": attention_example, "causal_attention": causal_attention_example, "rms_norm": rms_norm_example,
          "rotary": rotary_example, "swiglu": swiglu_example, "grouped_attention": grouped_attention_example}


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
