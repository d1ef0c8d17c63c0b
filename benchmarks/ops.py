"""Forward and forward+backward time of each hand-written op at the tutorials' shapes.

    python benchmarks/ops.py                      # cpu (and cuda when CuPy sees a GPU)
    python benchmarks/ops.py --torch --json ops.json
    python benchmarks/ops.py --device cpu --shapes mlm --only attention,cross_entropy

Shapes: "mlm" is the MLM tutorial (batch 128, sequence 20, width 128, 8 heads,
feed-forward 512, vocabulary 40,000, 15% of positions scored); "classifier" is the IMDB
tutorial (batch 32, sequence 256, width 256, 4 heads, feed-forward 512, vocabulary 30,522,
2 classes). Each op runs on float32 inputs; forward+backward ends with the input
gradients computed (for a non-scalar output, from a fixed random upstream gradient).
Contenders alternate within each repeat; the figures are medians.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import run_cli, time_alternating  # noqa: E402  (puts the repository on the path)
import tinygrad_nlp.functional as F  # noqa: E402
from tinygrad_nlp import Tensor, backend, manual_seed  # noqa: E402

SHAPES = {
    "mlm": dict(batch=128, seq=20, d=128, heads=8, ff=512, vocab=40000, scored=384, classes=40000, dropout=0.1),
    "classifier": dict(batch=32, seq=256, d=256, heads=4, ff=512, vocab=30522, scored=32, classes=2, dropout=0.4),
}
OPS = ["embedding", "linear", "softmax", "cross_entropy", "linear_cross_entropy", "layer_norm", "dropout",
       "attention", "self_attention"]


def make_inputs(op, s, rng):
    """Host arrays for one op: (float inputs that get gradients, fixed extras, description)."""
    B, T, D, H = s["batch"], s["seq"], s["d"], s["heads"]
    N = B * T

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    pad = np.arange(T)[None] < rng.integers(T // 2, T + 1, (B, 1))
    if op == "embedding":
        return [f32(s["vocab"], D)], dict(ids=rng.integers(0, s["vocab"], (B, T))), \
            f"ids ({B}, {T}), table ({s['vocab']}, {D})"
    if op == "linear":
        return [f32(N, D), f32(s["ff"], D), f32(s["ff"])], {}, f"({N}, {D}) -> {s['ff']}"
    if op == "softmax":
        return [f32(B, H, T, T)], {}, f"({B}, {H}, {T}, {T})"
    if op == "cross_entropy":
        return [f32(s["scored"], s["classes"])], dict(targets=rng.integers(0, s["classes"], s["scored"])), \
            f"logits ({s['scored']}, {s['classes']})"
    if op == "linear_cross_entropy":
        targets = rng.integers(0, s["classes"], s["scored"])
        return [f32(s["scored"], D), f32(s["classes"], D) * 0.1], dict(targets=targets), \
            f"({s['scored']}, {D}) x ({s['classes']}, {D})"
    if op == "layer_norm":
        return [f32(N, D), f32(D), f32(D)], {}, f"({N}, {D})"
    if op == "dropout":
        return [f32(N, s["ff"])], dict(p=s["dropout"]), f"({N}, {s['ff']}), p={s['dropout']}"
    if op == "attention":
        return [f32(B, H, T, D // H) for _ in range(3)], dict(mask=pad, p=s["dropout"]), \
            f"q,k,v ({B}, {H}, {T}, {D // H}), padding mask, dropout {s['dropout']}"
    if op == "self_attention":
        return [f32(B, T, 3 * D)], dict(mask=pad, p=s["dropout"], heads=H), \
            f"qkv ({B}, {T}, {3 * D}), {H} heads, padding mask, dropout {s['dropout']}"
    raise ValueError(op)


def upstream_gradient(shape):
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def timers(fn, inputs, sync, upstream_like, forward_context):
    """forward() and forward_backward() runs of ``fn(*inputs)`` for either framework;
    a non-scalar output gets one fixed random upstream gradient (``upstream_like``)."""
    upstream = {}

    def forward():
        with forward_context():
            fn(*inputs)
        sync()

    def forward_backward():
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        shape = tuple(out.shape)
        if shape and shape not in upstream:
            upstream[shape] = upstream_like(shape)
        out.backward(upstream.get(shape))
        sync()
    return forward, forward_backward


def ours(op, arrays, extra, device):
    xp = backend.xp_for(device)
    inputs = [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]
    extra = {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in extra.items()}
    calls = {
        "embedding": lambda w: F.embedding(extra["ids"], w),
        "linear": F.linear,
        "softmax": F.softmax,
        "cross_entropy": lambda x: F.cross_entropy(x, extra["targets"]),
        "linear_cross_entropy": lambda x, w: F.linear_cross_entropy(x, w, extra["targets"]),
        "layer_norm": F.layer_norm,
        "dropout": lambda x: F.dropout(x, extra["p"]),
        "attention": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=extra["mask"], dropout_p=extra["p"]),
        "self_attention": lambda x: F.self_attention(x, extra["heads"], mask=extra["mask"], dropout_p=extra["p"]),
    }

    def sync():
        if device == "cuda":
            xp.cuda.Device().synchronize()
    return timers(calls[op], inputs, sync, lambda shape: xp.asarray(upstream_gradient(shape)), contextlib.nullcontext)


def theirs(op, arrays, extra, device):
    import torch
    import torch.nn.functional as TF
    dev = "cuda" if device == "cuda" else "cpu"
    inputs = [torch.tensor(a, device=dev, requires_grad=True) for a in arrays]
    extra = {k: torch.tensor(v, device=dev) if isinstance(v, np.ndarray) else v for k, v in extra.items()}

    def attention(q, k, v):
        return TF.scaled_dot_product_attention(q, k, v, attn_mask=extra["mask"][:, None, None, :], dropout_p=extra["p"])

    def self_attention(x):
        B, T, width = x.shape
        q, k, v = x.reshape(B, T, 3, extra["heads"], -1).permute(2, 0, 3, 1, 4)
        return attention(q, k, v).transpose(1, 2).reshape(B, T, width // 3)
    calls = {
        "embedding": lambda w: TF.embedding(extra["ids"], w),
        "linear": TF.linear,
        "softmax": lambda x: torch.softmax(x, -1),
        "cross_entropy": lambda x: TF.cross_entropy(x, extra["targets"]),
        "linear_cross_entropy": lambda x, w: TF.cross_entropy(TF.linear(x, w), extra["targets"]),
        "layer_norm": lambda x, w, b: TF.layer_norm(x, (x.shape[-1],), w, b),
        "dropout": lambda x: TF.dropout(x, extra["p"]),
        "attention": attention,
        "self_attention": self_attention,
    }

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()
    return timers(calls[op], inputs, sync, lambda shape: torch.tensor(upstream_gradient(shape), device=dev),
                  torch.no_grad)


def machine():
    info = dict(python=platform.python_version(), numpy=np.__version__, cores=os.cpu_count(), cpu=platform.processor())
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    if backend.cuda_available():
        import cupy
        info["cupy"] = cupy.__version__
        info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="backend; 'all' is cpu plus cuda when a GPU is usable (all)")
    p.add_argument("--shapes", choices=["mlm", "classifier", "all"], default="all",
                   help="which tutorial's shapes (all)")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(OPS)}")
    p.add_argument("--torch", action="store_true", help="also time PyTorch on the same inputs, alternating")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per contender (20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    ops = [o.strip() for o in args.only.split(",") if o.strip()] or OPS
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        p.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    if args.device == "all":
        devices = ["cpu"] + (["cuda"] if backend.cuda_available() else [])
        if len(devices) == 1:
            print(f"cuda: skipped ({backend.cuda_unavailable_reason()})")
    else:
        backend.check_device(args.device)
        devices = [args.device]
    shape_sets = list(SHAPES) if args.shapes == "all" else [args.shapes]
    info = machine()
    print("machine:", ", ".join(f"{k} {v}" for k, v in info.items()))
    rows = []
    header = f"{'op':21} {'shapes':8} {'device':6} {'fwd ms':>8} {'fwd+bwd ms':>10}"
    if args.torch:
        header += f" {'torch fwd':>9} {'torch f+b':>9} {'ratio f+b':>9}"
    print(header + "   inputs")
    for device in devices:
        for shape_name in shape_sets:
            for op in ops:
                manual_seed(0)
                arrays, extra, described = make_inputs(op, SHAPES[shape_name], np.random.default_rng(0))
                fwd, fwd_bwd = ours(op, arrays, extra, device)
                contenders = {"fwd": fwd, "fwd_bwd": fwd_bwd}
                if args.torch:
                    t_fwd, t_fwd_bwd = theirs(op, arrays, extra, device)
                    contenders.update(torch_fwd=t_fwd, torch_fwd_bwd=t_fwd_bwd)
                median = {k: float(np.median(v))
                          for k, v in time_alternating(contenders, args.repeats, args.warmup).items()}
                row = dict(op=op, shapes=shape_name, device=device, inputs=described,
                           **{f"{k}_ms": 1000 * v for k, v in median.items()})
                line = f"{op:21} {shape_name:8} {device:6} {row['fwd_ms']:8.2f} {row['fwd_bwd_ms']:10.2f}"
                if args.torch:
                    row["ratio_fwd_bwd"] = row["fwd_bwd_ms"] / row["torch_fwd_bwd_ms"]
                    line += f" {row['torch_fwd_ms']:9.2f} {row['torch_fwd_bwd_ms']:9.2f} {row['ratio_fwd_bwd']:9.2f}"
                print(line + "   " + described, flush=True)
                rows.append(row)
    if args.torch:
        print("ratio f+b: our forward+backward time / PyTorch's (below 1: ours is faster)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(machine=info, command=" ".join(sys.argv), repeats=args.repeats, results=rows), f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
