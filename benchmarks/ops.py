"""Forward and forward+backward time of each hand-written op at the tutorials' shapes.

    python benchmarks/ops.py                      # cpu (and cuda when CuPy sees a GPU)
    python benchmarks/ops.py --torch --json ops.json
    python benchmarks/ops.py --device cpu --shapes mlm --only attention,cross_entropy
    python benchmarks/ops.py --reference          # each op's textbook class beside its fast path

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
from common import run_cli, time_alternating

from tinygrad_nlp import Tensor, backend, manual_seed, reference_ops
from tinygrad_nlp.testing import CASES, TUTORIAL_SHAPES, on_device

OPS = [name for name, case in CASES.items() if case.at_scale is not None]


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


def ours(op, arrays, constants, device, textbook=False):
    """Our op's runs: by default on the path the dispatch picks; ``textbook``: on the op's
    own class alone (``reference_ops``)."""
    inputs = [Tensor(backend.to_device(a, device), requires_grad=True) for a in arrays]
    constants = on_device(constants, device)

    def sync():
        if device == "cuda":
            backend.xp_for(device).cuda.Device().synchronize()

    def call(*x):
        with reference_ops(textbook):
            return CASES[op].ours(constants, *x)
    return timers(call, inputs, sync, lambda shape: backend.to_device(upstream_gradient(shape), device),
                  contextlib.nullcontext)


def theirs(op, arrays, constants, device):
    import torch
    dev = "cuda" if device == "cuda" else "cpu"
    inputs = [torch.tensor(a, device=dev, requires_grad=True) for a in arrays]
    constants = {k: torch.tensor(v, device=dev) if isinstance(v, np.ndarray) else v for k, v in constants.items()}
    if op == "dropout":
        call = lambda x: torch.nn.functional.dropout(x, constants["p"])  # noqa: E731
    else:
        call = lambda *x: CASES[op].torch(torch, constants, *x)  # noqa: E731

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()
    return timers(call, inputs, sync, lambda shape: torch.tensor(upstream_gradient(shape), device=dev), torch.no_grad)


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
    p.add_argument("--reference", action="store_true",
                   help="also time each op on its textbook class alone (reference_ops), alternating")
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
    shape_sets = list(TUTORIAL_SHAPES) if args.shapes == "all" else [args.shapes]
    info = machine()
    print("machine:", ", ".join(f"{k} {v}" for k, v in info.items()))
    rows = []
    header = f"{'op':21} {'shapes':8} {'device':6} {'fwd ms':>8} {'fwd+bwd ms':>10}"
    if args.torch:
        header += f" {'torch fwd':>9} {'torch f+b':>9} {'ratio f+b':>9}"
    if args.reference:
        header += f" {'textbook f+b':>12} {'ratio':>6}"
    print(header + "   inputs")
    for device in devices:
        for shape_name in shape_sets:
            for op in ops:
                manual_seed(0)
                arrays, extra, described = CASES[op].at_scale(TUTORIAL_SHAPES[shape_name], np.random.default_rng(0))
                fwd, fwd_bwd = ours(op, arrays, extra, device)
                contenders = {"fwd": fwd, "fwd_bwd": fwd_bwd}
                if args.torch:
                    t_fwd, t_fwd_bwd = theirs(op, arrays, extra, device)
                    contenders.update(torch_fwd=t_fwd, torch_fwd_bwd=t_fwd_bwd)
                if args.reference:
                    contenders["textbook_fwd_bwd"] = ours(op, arrays, extra, device, textbook=True)[1]
                median = {k: float(np.median(v))
                          for k, v in time_alternating(contenders, args.repeats, args.warmup).items()}
                row = dict(op=op, shapes=shape_name, device=device, inputs=described,
                           **{f"{k}_ms": 1000 * v for k, v in median.items()})
                line = f"{op:21} {shape_name:8} {device:6} {row['fwd_ms']:8.2f} {row['fwd_bwd_ms']:10.2f}"
                if args.torch:
                    row["ratio_fwd_bwd"] = row["fwd_bwd_ms"] / row["torch_fwd_bwd_ms"]
                    line += f" {row['torch_fwd_ms']:9.2f} {row['torch_fwd_bwd_ms']:9.2f} {row['ratio_fwd_bwd']:9.2f}"
                if args.reference:
                    row["textbook_ratio"] = row["textbook_fwd_bwd_ms"] / row["fwd_bwd_ms"]
                    line += f" {row['textbook_fwd_bwd_ms']:12.2f} {row['textbook_ratio']:6.2f}"
                print(line + "   " + described, flush=True)
                rows.append(row)
    if args.torch:
        print("ratio f+b: our forward+backward time / PyTorch's (below 1: ours is faster)")
    if args.reference:
        print("textbook f+b: the op's own class alone (reference_ops); ratio: textbook / default path")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(machine=info, command=" ".join(sys.argv), repeats=args.repeats, results=rows), f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
