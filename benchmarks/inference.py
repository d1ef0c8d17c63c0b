"""BERT inference on the CPU against transformers under ``torch.inference_mode()``: the
sequence classifier's forward (an embedding / classification call) at several batch
sizes, and a fill-mask forward of BertForMaskedLM, both on random weights of one shape.

    python benchmarks/inference.py                       # bert-base shape, seq 128, batch 1, 8, 32
    python benchmarks/inference.py --shape minilm --batches 1 8 32 64

Ours runs under ``no_grad`` in evaluation mode; the two alternate, run by run, in one
process, and each figure is the median of --repeats runs.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import run_cli, time_alternating

from tinygrad_nlp import manual_seed
from tinygrad_nlp.models import BertConfig, BertForMaskedLM, BertForSequenceClassification
from tinygrad_nlp.nn import evaluating
from tinygrad_nlp.tensor import no_grad

SHAPES = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}


def contenders(model_class, hf_class, config, ids, mask):
    import torch
    import transformers
    manual_seed(0)
    ours = model_class(BertConfig(**config)).eval()
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        theirs = getattr(transformers, hf_class).from_pretrained(folder).eval()
    types, t_ids, t_mask = np.zeros_like(ids), torch.tensor(ids), torch.tensor(mask)

    def run_ours():
        with evaluating(ours), no_grad():
            ours(ids, types, mask)

    def run_theirs():
        with torch.inference_mode():
            theirs(input_ids=t_ids, attention_mask=t_mask)
    return {"tinygrad_nlp": run_ours, "transformers": run_theirs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="bert-base", help="the model's shape (bert-base)")
    p.add_argument("--seq", type=int, default=128, help="tokens per row (128)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (1 8 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, median taken (5)")
    args = p.parse_args(argv)
    config = dict(SHAPES[args.shape], vocab_size=30522, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    print(f"{args.shape} shape, sequence {args.seq}, random weights; median ms of {args.repeats} (alternating)")
    print(f"{'forward':<34} {'batch':>5} {'ours':>9} {'transformers':>13} {'ours/theirs':>12}")
    for label, ours_class, hf_class in (("sequence classification", BertForSequenceClassification,
                                          "BertForSequenceClassification"),
                                         ("fill-mask (MLM logits)", BertForMaskedLM, "BertForMaskedLM")):
        for batch in args.batches:
            rng = np.random.default_rng(batch)
            ids = rng.integers(1, 30522, (batch, args.seq))
            mask = (np.arange(args.seq)[None] < rng.integers(args.seq // 2, args.seq + 1, (batch, 1))).astype(np.int64)
            runs = contenders(ours_class, hf_class, config, ids, mask)
            times = time_alternating(runs, args.repeats, warmup=1)
            ours, theirs = (1000 * np.median(times[name]) for name in ("tinygrad_nlp", "transformers"))
            print(f"{label:<34} {batch:>5} {ours:>9.1f} {theirs:>13.1f} {ours / theirs:>12.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
