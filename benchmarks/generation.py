"""Generated tokens per second against the context length: our GPT with the KV cache,
without it (the whole sequence again for every token), and transformers' ``generate`` on
the same weights (GPT-2 small's shape, random weights, greedy, one sequence).

    python benchmarks/generation.py                      # contexts 64, 128, 256; 32 new tokens
    python benchmarks/generation.py --contexts 256 512 --new-tokens 16 --layers 6

The prompt is context - new tokens long, so the last token sees the whole context.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from common import run_cli

from tinygrad_nlp import manual_seed
from tinygrad_nlp.models import GPT, GPTConfig


def tokens_per_second(new_tokens, repeats, generate, *args, **kwargs):
    """``new_tokens`` / the best time of ``generate(*args, **kwargs)`` over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        generate(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return new_tokens / best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contexts", type=int, nargs="+", default=[64, 128, 256], help="context lengths (64 128 256)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run (32)")
    p.add_argument("--layers", type=int, default=12, help="decoder blocks (12, as GPT-2 small)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, best taken (2)")
    p.add_argument("--no-transformers", action="store_true", help="skip transformers' generate")
    args = p.parse_args(argv)
    manual_seed(0)
    config = GPTConfig(n_layer=args.layers, n_positions=max(1024, max(args.contexts)), resid_pdrop=0.0, embd_pdrop=0.0,
                       attn_pdrop=0.0)
    ours = GPT(config).eval()
    theirs = torch = None
    if not args.no_transformers:
        try:
            import torch
            import transformers
        except ImportError:
            print("transformers or PyTorch is not installed: skipping their generate")
        else:
            with tempfile.TemporaryDirectory() as folder:
                ours.save_pretrained(folder)
                theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    print(f"GPT-2 small shape with {args.layers} layers ({ours.num_parameters():,} parameters), greedy, one sequence, "
          f"{args.new_tokens} new tokens, best of {args.repeats}; tokens/s")
    print(f"{'context':>8} {'ours, cached':>13} {'ours, uncached':>15} {'cached/uncached':>16} {'transformers':>13}")
    for context in args.contexts:
        prompt = np.random.default_rng(context).integers(0, config.vocab_size, (1, context - args.new_tokens))
        n, repeats = args.new_tokens, args.repeats
        cached = tokens_per_second(n, repeats, ours.generate, prompt, n, temperature=0)
        uncached = tokens_per_second(n, repeats, ours.generate, prompt, n, temperature=0, use_cache=False)
        row = f"{context:>8} {cached:>13.1f} {uncached:>15.1f} {cached / uncached:>15.1f}x"
        if theirs is not None:
            with torch.no_grad():
                hf = tokens_per_second(n, repeats, theirs.generate, torch.tensor(prompt), max_new_tokens=n,
                                       min_new_tokens=n, do_sample=False, pad_token_id=0)
            row += f" {hf:>13.1f} (ours/theirs {cached / hf:.2f}x)"
        print(row)
    return 0


if __name__ == "__main__":
    run_cli(main)
