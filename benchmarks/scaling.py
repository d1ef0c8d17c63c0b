"""Time per MLM training step as the batch size, the sequence length and the width grow.

    python benchmarks/scaling.py                       # cpu, PNG in benchmarks/scaling.png
    python benchmarks/scaling.py --torch --layers 8 --out scaling.png --json scaling.json

Starts from the MLM tutorial's model (batch 128, sequence 20, width 128, 8 heads,
feed-forward 4 x width, vocabulary 40,000, dropout 0.1, 15% scored) with ``--layers``
encoder layers, and varies one of batch / sequence / width at a time. Each point is the
median of ``--repeats`` steps after one warm-up step; with ``--torch`` PyTorch eager
(LM head on the scored positions) runs at each point too, alternating with ours.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import train_step
from common import run_cli, time_alternating

from tinygrad_nlp import backend

SWEEPS = {"batch": [16, 32, 64, 128, 256], "seq": [10, 20, 40, 80, 160], "d": [64, 128, 256, 512]}
LABELS = {"batch": "batch size", "seq": "sequence length", "d": "width (d_model; heads = d / 16, ff = 4 d)"}


def config_for(base, axis, value):
    c = dict(base, **{axis: value})
    if axis == "d":
        c.update(heads=max(1, value // 16), ff=4 * value)
    return c


def run_point(c, device, with_torch, repeats):
    contenders = {"tinygrad_nlp": train_step.ours(c, device, "mlm")}
    if with_torch:
        contenders["torch"] = train_step.torch_step(c, device, "mlm", full_head=False)
    times = time_alternating(contenders, repeats, warmup=1)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def plot(results, path, with_torch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    for ax, (axis, points) in zip(np.atleast_1d(axes), results.items()):
        xs = [p["value"] for p in points]
        ax.plot(xs, [p["tinygrad_nlp"] for p in points], "o-", label="tinygrad_nlp")
        if with_torch:
            ax.plot(xs, [p["torch"] for p in points], "s--", label="PyTorch eager (scored head)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(LABELS[axis])
        ax.set_ylabel("ms per training step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("MLM training step (forward, loss, backward, Adam)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="backend (cpu)")
    p.add_argument("--layers", type=int, default=2, help="encoder layers (2; the tutorial has 8)")
    p.add_argument("--axes", default="batch,seq,d", help="which sweeps, comma-separated (batch,seq,d)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per point and contender (3)")
    p.add_argument("--torch", action="store_true", help="time PyTorch eager at each point too")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaling.png"),
                   help="PNG path (benchmarks/scaling.png)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    backend.check_device(args.device)
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    unknown = sorted(set(axes) - set(SWEEPS))
    if unknown:
        p.error(f"unknown axis {', '.join(unknown)}; choose from {', '.join(SWEEPS)}")
    base = dict(train_step.CONFIGS["mlm"], layers=args.layers)
    results = {}
    for axis in axes:
        results[axis] = []
        for value in SWEEPS[axis]:
            c = config_for(base, axis, value)
            ms = run_point(c, args.device, args.torch, args.repeats)
            tokens = c["batch"] * c["seq"]
            ours_ms = ms["tinygrad_nlp"]
            line = f"{axis}={value:<4} ours {ours_ms:8.1f} ms ({tokens / ours_ms * 1000:8,.0f} tokens/s)"
            if args.torch:
                line += f"   torch {ms['torch']:8.1f} ms   ratio {ms['tinygrad_nlp'] / ms['torch']:.2f}"
            print(line, flush=True)
            results[axis].append(dict(value=value, tokens=tokens, **ms))
    plot(results, args.out, args.torch)
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(device=args.device, layers=args.layers, results=results), f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)
