"""One table of op cases, shared by the CPU tests, the GPU tests, the guide's checks
(``docs/check.py``) and the op benchmark (``benchmarks/ops.py``).

An ``OpCase`` holds how to call the op (``ours``), the same computation in PyTorch
(``torch``, for the parity tests; None where PyTorch differs by design), small input
shapes and constants for gradient checks and CPU/GPU comparisons, and, for the ops the
tutorials lean on, inputs at the tutorials' shapes (``at_scale``). Adding an op means
one entry here, its tests, and its section of docs/backward.md.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from .backend import manual_seed, to_device
from .tensor import Tensor
from .tutorials import CLASSIFIER_TUTORIAL, MLM_TUTORIAL


def _shapes(tutorial, scored, classes):
    return dict(batch=tutorial["batch_size"], seq=tutorial["seq_len"], d=tutorial["d_model"], heads=tutorial["n_heads"],
                ff=tutorial["d_ff"], vocab=tutorial["vocab_size"], layers=tutorial["n_layers"], scored=scored,
                classes=classes, dropout=tutorial["dropout"])


# The tutorials' shapes (tutorials.py): the MLM scores 15% of its 128 x 20 positions over a
# 40,000-word vocabulary; the classifier scores one [CLS] vector per review over 2 classes.
TUTORIAL_SHAPES = {
    "mlm": _shapes(MLM_TUTORIAL, scored=384, classes=MLM_TUTORIAL["vocab_size"]),
    "classifier": _shapes(CLASSIFIER_TUTORIAL, scored=CLASSIFIER_TUTORIAL["batch_size"], classes=2),
}


@dataclass(frozen=True)
class OpCase:
    """``ours(c, *inputs)`` takes the float input Tensors and ``c``, the constants on
    their device; ``torch(torch, c, *inputs)`` the same with the torch module, torch
    tensors and constants."""
    ours: Callable
    shapes: tuple
    constants: dict = field(default_factory=dict)
    torch: Callable | None = None
    at_scale: Callable | None = None  # (shape setting, rng) -> (float arrays, constants, description)
    same_on_every_device: bool = True  # False where the result depends on a device's RNG


def _dropout_with_fixed_mask(c, x):
    manual_seed(c["seed"])  # the same mask on every evaluation (finite differences need it)
    return F.dropout(x, c["p"])


def _torch_attention(torch, c, q, k, v):
    mask = c["mask"][:, None, None, :]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=c.get("p", 0.0))


def _torch_causal_attention(torch, c, q, k, v):
    """PyTorch's attention with the causal triangle aligned as ours: the queries are the
    last Tq of the Tk positions (PyTorch's ``is_causal`` itself when Tq == Tk)."""
    Tq, Tk = q.shape[2], k.shape[2]
    if Tq == Tk and c.get("mask") is None:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
    if c.get("mask") is not None:
        allowed = allowed & c["mask"][:, None, None, :]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def _torch_self_attention(torch, c, x):
    B, T, width = x.shape
    q, k, v = x.reshape(B, T, 3, c["heads"], -1).permute(2, 0, 3, 1, 4)
    attend = _torch_causal_attention if c.get("causal") else _torch_attention
    return attend(torch, c, q, k, v).transpose(1, 2).reshape(B, T, width // 3)


def _torch_ragged_self_attention(torch, c, x):
    """Each sequence's rows through PyTorch's attention on their own, side by side."""
    outputs, start = [], 0
    for end in c["lengths"].cumsum(0).tolist():
        L = end - start
        if L:
            q, k, v = x[start:end].reshape(L, 3, c["heads"], -1).permute(1, 2, 0, 3)  # each (H, L, Dh)
            allowed = None if c.get("keys") is None else c["keys"][start:end][None, :].expand(L, L)
            if c.get("causal"):
                allowed = torch.ones(L, L, dtype=torch.bool).tril()
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            outputs.append(out.transpose(0, 1).reshape(L, -1))
        start = end
    return torch.cat(outputs)


def _torch_rotary_embedding(torch, c, x, theta=10000.0):
    """transformers' ``apply_rotary_pos_emb`` with Llama's cos and sin, made in float64 as ours are."""
    Dh = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, Dh, 2, dtype=torch.float64) / Dh)
    freqs = c["positions"].double()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = (a.to(x.dtype) if a.ndim == 2 else a.to(x.dtype)[:, None] for a in (emb.cos(), emb.sin()))
    return x * cos + torch.cat([-x[..., Dh // 2:], x[..., :Dh // 2]], -1) * sin


def _torch_grouped_attention(torch, c, q, k, v):
    """PyTorch's attention with ``enable_gqa``, the causal triangle aligned as ours."""
    Tq, Tk = q.shape[2], k.shape[2]
    allowed = None if c.get("mask") is None else c["mask"][:, None, None, :]
    if c.get("causal"):
        triangle = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
        allowed = triangle if allowed is None else allowed & triangle
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)


def _padding(rng, B, T):
    return np.arange(T)[None] < rng.integers(T // 2, T + 1, (B, 1))


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _at_scale(build):
    """``build(s, rng, B, T, D, H)`` with the shape setting unpacked."""
    return lambda s, rng: build(s, rng, s["batch"], s["seq"], s["d"], s["heads"])


_IDS = np.array([[1, 3, 1], [0, 3, 3]])
_TARGETS = np.array([2, -100, 0, 4])
_PADDING = np.array([[True, True, False, False], [True, False, False, False]])

CASES = {
    "add": OpCase(lambda c, a, b: F.add(a, b), ((2, 3), (3,)), torch=lambda torch, c, a, b: a + b),
    "sub": OpCase(lambda c, a, b: F.sub(a, b), ((2, 3), (2, 1)), torch=lambda torch, c, a, b: a - b),
    "mul": OpCase(lambda c, a, b: F.mul(a, b), ((2, 3), (2, 3)), torch=lambda torch, c, a, b: a * b),
    "div": OpCase(lambda c, a, b: F.div(a, b * b + 1.0), ((2, 3), (3,)), torch=lambda torch, c, a, b: a / (b * b + 1.0)),
    "pow": OpCase(lambda c, a, b: F.pow(a * a + 1.0, b), ((2, 3), (2, 3)), torch=lambda torch, c, a, b: (a * a + 1.0) ** b),
    "neg": OpCase(lambda c, x: F.neg(x), ((2, 3),), torch=lambda torch, c, x: -x),
    "exp": OpCase(lambda c, x: F.exp(x), ((2, 3),), torch=lambda torch, c, x: x.exp()),
    "log": OpCase(lambda c, x: F.log(x * x + 0.5), ((2, 3),), torch=lambda torch, c, x: (x * x + 0.5).log()),
    "relu": OpCase(lambda c, x: F.relu(x), ((4, 5),), torch=lambda torch, c, x: x.relu()),
    "gelu": OpCase(lambda c, x: F.gelu(x * 2.0), ((4, 5),), torch=lambda torch, c, x: torch.nn.functional.gelu(x * 2.0)),
    "gelu_tanh": OpCase(lambda c, x: F.gelu(x, approximate="tanh"), ((4, 5),),
                        torch=lambda torch, c, x: torch.nn.functional.gelu(x, approximate="tanh")),
    "silu": OpCase(lambda c, x: F.silu(x * 2.0), ((4, 5),), torch=lambda torch, c, x: torch.nn.functional.silu(x * 2.0)),
    "swiglu": OpCase(lambda c, gate, up: F.swiglu(gate * 2.0, up), ((2, 3, 4), (2, 3, 4)),
                     torch=lambda torch, c, gate, up: torch.nn.functional.silu(gate * 2.0) * up),
    "tanh": OpCase(lambda c, x: F.tanh(x), ((4, 5),), torch=lambda torch, c, x: x.tanh()),
    "reshape": OpCase(lambda c, x: F.reshape(x, (3, 8)), ((2, 3, 4),), torch=lambda torch, c, x: x.reshape(3, 8)),
    "transpose": OpCase(lambda c, x: F.transpose(x, (1, 0, 2)), ((2, 3, 4),), torch=lambda torch, c, x: x.permute(1, 0, 2)),
    "getitem": OpCase(lambda c, x: x[c["rows"]][:, 1:3], ((3, 4),), dict(rows=np.array([0, 0, 2])),
                      torch=lambda torch, c, x: x[c["rows"]][:, 1:3]),
    "scatter_rows": OpCase(lambda c, x: F.scatter_rows(x, c["rows"], 5), ((4, 3),), dict(rows=np.array([4, 0, 4, 2])),
                           torch=lambda torch, c, x: torch.zeros(5, 3, dtype=x.dtype).index_add(
                               0, torch.as_tensor(c["rows"]), x)),
    "concatenate": OpCase(lambda c, a, b: F.concatenate([a, b], axis=1), ((2, 3), (2, 2)),
                          torch=lambda torch, c, a, b: torch.cat([a, b], 1)),
    "sum": OpCase(lambda c, x: F.sum(x, axis=(0, 2)), ((2, 3, 4),), torch=lambda torch, c, x: x.sum((0, 2))),
    "mean": OpCase(lambda c, x: F.mean(x, axis=1, keepdims=True), ((2, 3, 4),), torch=lambda torch, c, x: x.mean(1, True)),
    "matmul": OpCase(lambda c, a, b: F.matmul(a, b), ((2, 3, 4), (4, 5)), torch=lambda torch, c, a, b: a @ b),
    "linear": OpCase(
        lambda c, x, w, b: F.linear(x, w, b), ((2, 3, 4), (5, 4), (5,)),
        torch=lambda torch, c, x, w, b: torch.nn.functional.linear(x, w, b),
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, B * T, D), _f32(rng, s["ff"], D), _f32(rng, s["ff"])], {}, f"({B * T}, {D}) -> {s['ff']}"))),
    "linear_relu": OpCase(
        lambda c, x, w, b: F.linear(x, w, b, activation="relu"), ((2, 3, 4), (5, 4), (5,)),
        torch=lambda torch, c, x, w, b: torch.nn.functional.linear(x, w, b).relu()),
    "linear_gelu": OpCase(
        lambda c, x, w, b: F.linear(x, w, b, activation="gelu"), ((2, 3, 4), (5, 4), (5,)),
        torch=lambda torch, c, x, w, b: torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b))),
    "linear_gelu_tanh": OpCase(
        lambda c, x, w: F.linear(x, w, activation="gelu_tanh"), ((2, 3, 4), (5, 4)),
        torch=lambda torch, c, x, w: torch.nn.functional.gelu(torch.nn.functional.linear(x, w), approximate="tanh")),
    "linear_silu": OpCase(
        lambda c, x, w, b: F.linear(x, w, b, activation="silu"), ((2, 3, 4), (5, 4), (5,)),
        torch=lambda torch, c, x, w, b: torch.nn.functional.silu(torch.nn.functional.linear(x, w, b))),
    "embedding": OpCase(
        lambda c, w: F.embedding(c["ids"], w), ((5, 3),), dict(ids=_IDS),
        torch=lambda torch, c, w: torch.nn.functional.embedding(c["ids"], w),
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, s["vocab"], D)], dict(ids=rng.integers(0, s["vocab"], (B, T))),
            f"ids ({B}, {T}), table ({s['vocab']}, {D})"))),
    "softmax": OpCase(
        lambda c, x: F.softmax(x), ((3, 5),), torch=lambda torch, c, x: x.softmax(-1),
        at_scale=_at_scale(lambda s, rng, B, T, D, H: ([_f32(rng, B, H, T, T)], {}, f"({B}, {H}, {T}, {T})"))),
    "log_softmax": OpCase(lambda c, x: F.log_softmax(x, axis=0), ((3, 5),), torch=lambda torch, c, x: x.log_softmax(0)),
    "cross_entropy": OpCase(
        lambda c, x: F.cross_entropy(x, c["targets"]), ((4, 5),), dict(targets=_TARGETS),
        torch=lambda torch, c, x: torch.nn.functional.cross_entropy(x, c["targets"]),
        at_scale=lambda s, rng: ([_f32(rng, s["scored"], s["classes"])],
                                 dict(targets=rng.integers(0, s["classes"], s["scored"])),
                                 f"logits ({s['scored']}, {s['classes']})")),
    "linear_cross_entropy": OpCase(
        lambda c, x, w, b: F.linear_cross_entropy(x, w, c["targets"], bias=b), ((4, 3), (5, 3), (5,)),
        dict(targets=_TARGETS),
        torch=lambda torch, c, x, w, b: torch.nn.functional.cross_entropy(
            torch.nn.functional.linear(x, w, b), c["targets"]),
        at_scale=lambda s, rng: ([_f32(rng, s["scored"], s["d"]), _f32(rng, s["classes"], s["d"]) * 0.1,
                                  np.zeros(s["classes"], np.float32)],
                                 dict(targets=rng.integers(0, s["classes"], s["scored"])),
                                 f"({s['scored']}, {s['d']}) x ({s['classes']}, {s['d']})")),
    "layer_norm": OpCase(
        lambda c, x, w, b: F.layer_norm(x, w, b), ((2, 3, 6), (6,), (6,)),
        torch=lambda torch, c, x, w, b: torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b),
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, B * T, D), _f32(rng, D), _f32(rng, D)], {}, f"({B * T}, {D})"))),
    "rms_norm": OpCase(
        lambda c, x, w: F.rms_norm(x, w), ((2, 3, 6), (6,)),
        torch=lambda torch, c, x, w: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, eps=1e-6)),
    "rotary_embedding": OpCase(  # a decoding step's positions: after 3 cached ones
        lambda c, x: F.rotary_embedding(x, c["positions"]), ((2, 2, 4, 6),), dict(positions=np.array([3, 4, 5, 6])),
        torch=_torch_rotary_embedding),
    "rotary_embedding_per_example_positions": OpCase(
        lambda c, x: F.rotary_embedding(x, c["positions"], theta=500.0), ((2, 2, 3, 4),),
        dict(positions=np.array([[0, 1, 2], [9, 10, 11]])),
        torch=lambda torch, c, x: _torch_rotary_embedding(torch, c, x, theta=500.0)),
    "dropout": OpCase(
        _dropout_with_fixed_mask, ((4, 5),), dict(p=0.3, seed=0), same_on_every_device=False,
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, B * T, s["ff"])], dict(p=s["dropout"], seed=0), f"({B * T}, {s['ff']}), p={s['dropout']}"))),
    "attention": OpCase(
        lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, mask=c["mask"], dropout_p=c.get("p", 0.0)),
        ((2, 2, 4, 3),) * 3, dict(mask=_PADDING), torch=_torch_attention,
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, B, H, T, D // H) for _ in range(3)], dict(mask=_padding(rng, B, T), p=s["dropout"]),
            f"q,k,v ({B}, {H}, {T}, {D // H}), padding mask, dropout {s['dropout']}"))),
    "attention_fully_masked_row": OpCase(
        lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, mask=c["mask"]), ((2, 2, 3, 4),) * 3,
        dict(mask=np.array([[True, True, False], [False, False, False]]))),
    "attention_causal": OpCase(
        lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), ((2, 2, 4, 3),) * 3,
        torch=_torch_causal_attention),
    "attention_causal_with_padding": OpCase(
        lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, mask=c["mask"], is_causal=True),
        ((2, 2, 4, 3),) * 3, dict(mask=_PADDING), torch=_torch_causal_attention),
    "attention_causal_after_cached_keys": OpCase(  # a decoding step: 2 new queries, 5 keys
        lambda c, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        ((2, 2, 2, 3), (2, 2, 5, 3), (2, 2, 5, 3)), torch=_torch_causal_attention),
    "grouped_query_attention": OpCase(  # 4 query heads, 2 key/value heads
        lambda c, q, k, v: F.grouped_query_attention(q, k, v, mask=c["mask"]),
        ((2, 4, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3)), dict(mask=_PADDING), torch=_torch_grouped_attention),
    "grouped_query_attention_causal_after_cached_keys": OpCase(  # one key/value head for 3 query heads, 2 new queries
        lambda c, q, k, v: F.grouped_query_attention(q, k, v, is_causal=True),
        ((2, 3, 2, 4), (2, 1, 5, 4), (2, 1, 5, 4)), dict(causal=True), torch=_torch_grouped_attention),
    "self_attention_causal": OpCase(
        lambda c, x: F.self_attention(x, c["heads"], is_causal=True), ((2, 4, 12),), dict(heads=2),
        torch=lambda torch, c, x: _torch_self_attention(torch, dict(c, causal=True), x)),
    "ragged_self_attention": OpCase(  # sequences of 3, 0, 2 and 1 rows; one row a query only
        lambda c, x: F.ragged_self_attention(x, c["lengths"], c["heads"], key_mask=c["keys"]), ((6, 12),),
        dict(lengths=np.array([3, 0, 2, 1]), keys=np.array([True, False, True, True, True, True]), heads=2),
        torch=_torch_ragged_self_attention),
    "ragged_self_attention_causal": OpCase(
        lambda c, x: F.ragged_self_attention(x, c["lengths"], c["heads"], is_causal=True), ((6, 12),),
        dict(lengths=np.array([4, 2]), heads=2, causal=True), torch=_torch_ragged_self_attention),
    "self_attention": OpCase(
        lambda c, x: F.self_attention(x, c["heads"], mask=c["mask"], dropout_p=c.get("p", 0.0)), ((2, 4, 12),),
        dict(mask=_PADDING, heads=2),
        torch=_torch_self_attention,
        at_scale=_at_scale(lambda s, rng, B, T, D, H: (
            [_f32(rng, B, T, 3 * D)], dict(mask=_padding(rng, B, T), heads=H, p=s["dropout"]),
            f"qkv ({B}, {T}, {3 * D}), {H} heads, padding mask, dropout {s['dropout']}"))),
}


def small_inputs(name: str, dtype=np.float64, device: str = "cpu", seed: int = 0):
    """(float input Tensors that require gradients, constants) of a case, at its small
    shapes, on ``device``."""
    case = CASES[name]
    rng = np.random.default_rng(seed)
    inputs = [Tensor(to_device(rng.standard_normal(s).astype(dtype), device), requires_grad=True)
              for s in case.shapes]
    return inputs, on_device(case.constants, device)


def on_device(constants: dict, device: str) -> dict:
    """The array constants moved to ``device`` (numbers and flags stay as they are)."""
    return {k: to_device(v, device) if isinstance(v, np.ndarray) else v for k, v in constants.items()}
