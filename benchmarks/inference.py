"""BERT inference on the CPU against transformers under ``torch.inference_mode()``: the
sequence classifier's forward (an embedding / classification call) at several batch
sizes, BertForMaskedLM's logits at every position, and fill-mask's logits at the [MASK]
positions alone (15% of the real tokens; transformers running its encoder and then its head on
those rows), all on random weights of one shape.

    python benchmarks/inference.py                       # bert-base shape, seq 128, batch 1, 8, 32
    python benchmarks/inference.py --shape minilm --batches 1 8 32 64

Ours runs under ``no_grad`` in evaluation mode; the two alternate, run by run, in one
process, and each figure is the median of --repeats runs. ``--floor`` also times, for the
classifier, what our forward cannot do without: every layer's four matrix products on the
batch's real tokens, alone and with the exact GELU after the first feed-forward product
(one thread, the layers' own weights), as fractions of transformers' whole forward.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import STEP_SETTLE_SECONDS, run_cli, time_alternating

from tinygrad_nlp import manual_seed
from tinygrad_nlp.models import BertConfig, BertForMaskedLM, BertForSequenceClassification
from tinygrad_nlp.nn import DataParallel, evaluating
from tinygrad_nlp.tensor import no_grad

SHAPES = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}


def floor_runs(model, tokens):
    """Every layer's four products on ``tokens`` rows (QKV, attention output, the two
    feed-forward ones), and the same with the exact GELU, as our forward runs them."""
    from tinygrad_nlp.ops.activations import ACTIVATIONS
    gelu = ACTIVATIONS["gelu"].forward
    rng = np.random.default_rng(0)
    layers = model.bert.layers
    x = rng.standard_normal((tokens, layers[0].intermediate.weight.shape[1])).astype(np.float32)
    h = rng.standard_normal((tokens, layers[0].intermediate.weight.shape[0])).astype(np.float32)

    def products(with_gelu):
        for layer in layers:
            x @ layer.attention.qkv.weight.data.T
            x @ layer.attention.out.weight.data.T
            z = x @ layer.intermediate.weight.data.T
            if with_gelu:
                gelu(z, False)
            h @ layer.output.weight.data.T
    return {"products": lambda: products(False), "products + GELU": lambda: products(True)}


def contenders(model_class, hf_class, config, ids, mask, masked=None, threads=1, floor=False):
    """Our forward and transformers', or with ``masked`` (flat positions) the MLM logits
    at those positions only: ours through ``logits_at``, theirs as the encoder, then the
    head on those rows."""
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
            ours(ids, types, mask) if masked is None else ours.logits_at(masked, ids, types, mask)

    def run_ours_in_threads():
        with no_grad():
            in_threads(ids, types, mask)

    def run_theirs():
        with torch.inference_mode():
            if masked is None:
                theirs(input_ids=t_ids, attention_mask=t_mask)
            else:
                states = theirs.bert(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
                theirs.cls(states.reshape(-1, states.shape[-1])[torch.tensor(masked)])
    runs = {"tinygrad_nlp": run_ours, "transformers": run_theirs}
    if threads > 1 and masked is None:  # thread replicas, each on its share of the rows (nn.DataParallel)
        in_threads = DataParallel(ours, threads)
        runs["threads"] = run_ours_in_threads
    if floor:
        runs.update(floor_runs(ours, int(mask.sum())))
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="bert-base", help="the model's shape (bert-base)")
    p.add_argument("--seq", type=int, default=128, help="tokens per row (128)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (1 8 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, median taken (5)")
    p.add_argument("--threads", type=int, default=1,
                   help="also time our forward as N thread replicas, each on its share of the rows (1: not)")
    p.add_argument("--no-padding", action="store_true",
                   help="every row full length (default: lengths uniform in [seq/2, seq], padded)")
    p.add_argument("--floor", action="store_true",
                   help="also time the classifier's matrix products alone and with the GELU (ratios to transformers)")
    args = p.parse_args(argv)
    config = dict(SHAPES[args.shape], vocab_size=30522, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    padding = "no padding" if args.no_padding else "row lengths uniform in [seq/2, seq]"
    print(f"{args.shape} shape, sequence {args.seq} ({padding}), random weights; median ms of {args.repeats} "
          "(alternating)")
    threads = f"{args.threads} threads" if args.threads > 1 else ""
    print(f"{'forward':<34} {'batch':>5} {'ours':>9} {'transformers':>13} {'ours/theirs':>12} {threads:>10} "
          f"{'(ratio)' if threads else ''}")
    for label, ours_class, hf_class, at_masks in (
            ("sequence classification", BertForSequenceClassification, "BertForSequenceClassification", False),
            ("MLM logits, every position", BertForMaskedLM, "BertForMaskedLM", False),
            ("fill-mask: logits at 15% [MASK]s", BertForMaskedLM, "BertForMaskedLM", True)):
        for batch in args.batches:
            rng = np.random.default_rng(batch)
            ids = rng.integers(1, 30522, (batch, args.seq))
            lengths = rng.integers(args.seq // 2, args.seq + 1, (batch, 1))
            if args.no_padding:
                lengths[:] = args.seq
            mask = (np.arange(args.seq)[None] < lengths).astype(np.int64)
            masked = np.flatnonzero(mask.reshape(-1) * (rng.random(mask.size) < 0.15)) if at_masks else None
            floor = args.floor and ours_class is BertForSequenceClassification
            runs = contenders(ours_class, hf_class, config, ids, mask, masked, args.threads, floor)
            times = {name: 1000 * np.median(t) for name, t in time_alternating(runs, args.repeats, warmup=1,
                                                                               settle=STEP_SETTLE_SECONDS).items()}
            ours, theirs = times["tinygrad_nlp"], times["transformers"]
            line = f"{label:<34} {batch:>5} {ours:>9.1f} {theirs:>13.1f} {ours / theirs:>12.2f}"
            if "threads" in times:
                line += f" {times['threads']:>10.1f} ({times['threads'] / theirs:.2f})"
            if floor:
                line += "; " + ", ".join(f"{name} {times[name]:.1f} ({times[name] / theirs:.2f})"
                                         for name in ("products", "products + GELU"))
            print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)
