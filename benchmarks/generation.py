"""Generated tokens per second against the context length: our decoder with the KV cache,
without it (the whole sequence again for every token), and transformers' ``generate`` on
the same weights (random weights, greedy, one sequence): GPT-2 small's shape, or with
``--arch llama`` SmolLM-135M's (width 576, 9 heads, 3 key/value heads, 30 layers,
vocabulary 49,152, tied head).

    python benchmarks/generation.py                      # contexts 64, 128, 256; 32 new tokens
    python benchmarks/generation.py --contexts 256 512 --new-tokens 16 --layers 6
    python benchmarks/generation.py --arch llama         # SmolLM-135M's shape

The prompt is context - new tokens long, so the last token sees the whole context.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from common import run_cli

from tinygrad_nlp import manual_seed
from tinygrad_nlp.models import GPT, GPTConfig, Llama, LlamaConfig

# SmolLM-135M's config.json (HuggingFaceTB/SmolLM-135M), its layers set by --layers
SMOLLM_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                   num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, rope_theta=10000.0,
                   rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)


def models(arch, layers, contexts):
    """(our model, the transformers class of its folder, a description) for ``arch``."""
    if arch == "llama":
        config = LlamaConfig(**dict(SMOLLM_135M, num_hidden_layers=layers or 30,
                                    max_position_embeddings=max(2048, max(contexts))))
        return Llama(config).eval(), "LlamaForCausalLM", f"SmolLM-135M's shape with {config.num_hidden_layers} layers"
    config = GPTConfig(n_layer=layers or 12, n_positions=max(1024, max(contexts)), resid_pdrop=0.0, embd_pdrop=0.0,
                       attn_pdrop=0.0)
    return GPT(config).eval(), "GPT2LMHeadModel", f"GPT-2 small shape with {config.n_layer} layers"


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
    p.add_argument("--arch", choices=["gpt", "llama"], default="gpt", help="GPT-2 small's shape or SmolLM-135M's (gpt)")
    p.add_argument("--layers", type=int, default=None, help="decoder blocks (GPT-2 small's 12, SmolLM-135M's 30)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, best taken (2)")
    p.add_argument("--no-transformers", action="store_true", help="skip transformers' generate")
    args = p.parse_args(argv)
    manual_seed(0)
    ours, their_class, shape = models(args.arch, args.layers, args.contexts)
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
                theirs = getattr(transformers, their_class).from_pretrained(folder).eval()
    print(f"{shape} ({ours.num_parameters():,} parameters), greedy, one sequence, "
          f"{args.new_tokens} new tokens, best of {args.repeats}; tokens/s")
    print(f"{'context':>8} {'ours, cached':>13} {'ours, uncached':>15} {'cached/uncached':>16} {'transformers':>13}")
    for context in args.contexts:
        prompt = np.random.default_rng(context).integers(0, ours.hf_config.vocab_size, (1, context - args.new_tokens))
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
