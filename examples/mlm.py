"""Train a BERT-style masked-language model and export its word embeddings.

    python examples/mlm.py                          # built-in corpus, about a minute on 2 cores
    python examples/mlm.py --corpus europarl.fr.txt --steps 10000 --n-layers 8 --batch-size 128

The full MLM-tutorial setting is: batch 128, sequence 20, width 128, 8 heads, 8 pre-norm
layers, feed-forward 512, vocabulary up to 40,000, Adam (lr 1e-4, weight decay 1e-4).
The defaults keep that architecture's width, heads, feed-forward and sequence length,
with 4 layers and batch 64, so the built-in corpus trains in about a minute on 2 CPU cores.

Outputs in --out: values.tsv + names.tsv (TensorFlow Embedding Projector), metrics.json,
loss.png, neighbours.txt, fill_mask.txt, and the checkpoint if --checkpoint is given.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinygrad_nlp import TinygradNLPError, backend, checkpoint, manual_seed, no_grad  # noqa: E402
from tinygrad_nlp.data import (MLMBatcher, Vocab, encode_stream, read_lines, tokenize, word_class_corpus,  # noqa: E402
                               word_class_of)
from tinygrad_nlp.data.evaluate import nearest_neighbours, neighbour_purity  # noqa: E402
from tinygrad_nlp.errors import AnomalyError, DataError  # noqa: E402
from tinygrad_nlp.models import MaskedLanguageModel  # noqa: E402
from tinygrad_nlp.optim import SGD, Adam, AdamW, LRScheduler, warmup_schedule  # noqa: E402

BUILTIN = "builtin"
FILL_MASK_BUILTIN = [
    "alice ate three <mask> apples at the market on monday .",
    "the old <mask> ran to the garden .",
    "on friday , tom and emma cooked some <mask> .",
    "the kitchen is red and the <mask> is blue .",
]
FILL_MASK_FRENCH = ["la <mask> est close .", "je voudrais <mask> la commission .", "nous devons <mask> ce rapport ."]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=BUILTIN,
                   help="a UTF-8 text file with one sentence per line, a folder of .txt files, "
                        "or 'builtin' (default: a generated corpus whose word classes are known)")
    p.add_argument("--builtin-sentences", type=int, default=20000, help="sentences in the built-in corpus (20000)")
    p.add_argument("--steps", type=int, default=400, help="training steps (400; the tutorial trains far longer)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per batch (64; tutorial 128)")
    p.add_argument("--seq-len", type=int, default=20, help="tokens per row (20, as the tutorial)")
    p.add_argument("--d-model", type=int, default=128, help="model width (128, as the tutorial)")
    p.add_argument("--n-heads", type=int, default=8, help="attention heads (8, as the tutorial)")
    p.add_argument("--n-layers", type=int, default=4, help="encoder layers (4; tutorial 8)")
    p.add_argument("--d-ff", type=int, default=512, help="feed-forward width (512, as the tutorial)")
    p.add_argument("--vocab-size", type=int, default=40000, help="largest vocabulary, special tokens included (40000)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout probability (0.1)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3; tutorial 1e-4 over many more steps)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay (1e-4, as the tutorial)")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam", help="optimizer (adam)")
    p.add_argument("--warmup", type=int, default=30, help="linear learning-rate warm-up steps (30)")
    p.add_argument("--bert-masking", action="store_true",
                   help="BERT's 80/10/10 rule: of the chosen tokens, 80%% become <mask>, 10%% a random word, "
                        "10%% stay (default: all become <mask>, as the tutorial)")
    p.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="share the embedding table with the LM head (default on; --no-tie-weights as the tutorial)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--seed", type=int, default=0, help="seed for the corpus split, batches, init and dropout (0)")
    p.add_argument("--out", default="runs/mlm", help="output folder (runs/mlm)")
    p.add_argument("--checkpoint", default=None, help="checkpoint path written every --save-every steps and at the end")
    p.add_argument("--save-every", type=int, default=0, help="save the checkpoint every N steps (0: only at the end)")
    p.add_argument("--resume", default=None, help="continue the run saved in this checkpoint, exactly")
    p.add_argument("--eval-every", type=int, default=50, help="held-out loss and masked accuracy every N steps (50)")
    p.add_argument("--export-rows", type=int, default=3000, help="rows of values.tsv/names.tsv (3000, as the tutorial)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (plain log lines instead)")
    return p.parse_args(argv)


def load_sentences(args):
    if args.corpus == BUILTIN:
        return word_class_corpus(args.builtin_sentences, seed=args.seed)
    return read_lines(args.corpus)


def evaluate(model, batcher):
    """Held-out mean loss and accuracy over the masked tokens."""
    model.eval()
    total_loss, total_correct, total = 0.0, 0, 0
    with no_grad():
        for inputs, targets in batcher.heldout_batches():
            scored = targets != -100
            n = int(scored.sum())
            if n == 0:
                continue
            xp = backend.xp_for(model.device)
            logits = model(xp.asarray(inputs)).numpy()[scored]
            t = targets[scored]
            shifted = logits - logits.max(-1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            total_loss += float(-logp[np.arange(n), t].sum())
            total_correct += int((logits.argmax(-1) == t).sum())
            total += n
    model.train()
    return total_loss / max(total, 1), total_correct / max(total, 1)


def frequency_baseline(batcher):
    """Accuracy of always predicting the most frequent training token at masked places."""
    counts = np.bincount(batcher.train_rows.ravel(), minlength=len(batcher.vocab))
    counts[:5] = 0
    best = int(counts.argmax())
    hits = total = 0
    for _, targets in batcher.heldout_batches():
        scored = targets != -100
        hits += int((targets[scored] == best).sum())
        total += int(scored.sum())
    return hits / max(total, 1)


def fill_mask(model, vocab, sentences, seq_len):
    lines = []
    xp = backend.xp_for(model.device)
    model.eval()
    with no_grad():
        for s in sentences:
            ids = vocab.encode(tokenize(s))[:seq_len]
            positions = np.flatnonzero(ids == vocab.mask_id)
            if positions.size == 0:
                continue
            logits = model(xp.asarray(ids[None])).numpy()[0, positions[0]]
            logits[:5] = -np.inf
            top = np.argsort(-logits)[:5]
            p = np.exp(logits[top] - logits.max()) / np.exp(logits[np.isfinite(logits)] - logits.max()).sum()
            lines.append(f"{s}\n    " + "  ".join(f"{vocab.itos[i]} ({q:.2f})" for i, q in zip(top, p)))
    model.train()
    return lines


def progress(total, initial, disable):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True)


def plot_losses(path, metrics):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping loss.png (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(metrics["train_loss"]) + 1)
    ax.plot(steps, metrics["train_loss"], lw=0.8, alpha=0.6, label="training loss")
    if len(steps) >= 20:
        k = max(5, len(steps) // 30)
        smooth = np.convolve(metrics["train_loss"], np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"training loss ({k}-step mean)")
    if metrics["eval"]:
        ax.plot([e["step"] for e in metrics["eval"]], [e["loss"] for e in metrics["eval"]], "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (masked tokens)")
    ax.set_title("Masked-language-model loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export_projector(out, embeddings, vocab, rows):
    n = min(rows, len(vocab))
    np.savetxt(os.path.join(out, "values.tsv"), np.round(embeddings[:n], 4), delimiter="\t", fmt="%.4f")
    with open(os.path.join(out, "names.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab.itos[:n]) + "\n")
    return n


def run(args):
    backend.check_device(args.device)
    for name in ("steps", "batch_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff", "eval_every"):
        if getattr(args, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    os.makedirs(args.out, exist_ok=True)
    manual_seed(args.seed)
    sentences = load_sentences(args)
    vocab = Vocab.build((tokenize(s) for s in sentences), max_size=args.vocab_size)
    vocab.save(os.path.join(args.out, "vocab.txt"))
    stream = encode_stream(sentences, vocab)
    batcher = MLMBatcher(stream, vocab, args.seq_len, args.batch_size, seed=args.seed,
                         bert_masking=args.bert_masking)
    print(f"corpus: {len(sentences)} sentences, {len(stream)} tokens, vocabulary {len(vocab)}; "
          f"{len(batcher.train_rows)} training rows, {len(batcher.heldout_rows)} held-out rows of {args.seq_len}")

    model = MaskedLanguageModel(len(vocab), args.d_model, args.n_heads, args.d_ff, args.n_layers, max_len=args.seq_len,
                                dropout=args.dropout, tie_weights=args.tie_weights)
    model.to(args.device)
    params = model.parameters()
    if args.optimizer == "sgd":
        opt = SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    elif args.optimizer == "adamw":
        opt = AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = LRScheduler(opt, warmup_schedule(args.warmup))
    print(f"model: {model.num_parameters():,} parameters, {args.n_layers} pre-norm layers, width {args.d_model}, "
          f"{args.n_heads} heads, device {args.device}")

    metrics = {"config": vars(args), "seed": args.seed, "vocab_size": len(vocab), "train_loss": [],
               "tokens_per_second": [], "eval": []}
    start_step = 0
    if args.resume:
        extra = checkpoint.load(args.resume, model, opt)
        start_step = int(extra["step"])
        metrics["train_loss"] = list(extra["train_loss"])
        metrics["tokens_per_second"] = list(extra["tokens_per_second"])
        metrics["eval"] = list(extra["eval"])
        scheduler.load_state_dict(extra["scheduler"])
        backend.set_rng_state(extra["rng_state"])
        print(f"resumed from {args.resume} at step {start_step}")

    def save(step):
        if args.checkpoint:
            bad = [name for name, p in model.named_parameters() if not bool(xp.isfinite(p.data).all())]
            if bad:  # never replace a good checkpoint with a broken model
                raise AnomalyError(f"training diverged: parameter {bad[0]} is not finite after step {step} "
                                   f"(try a lower --lr); the last good checkpoint is {args.checkpoint}")
            checkpoint.save(args.checkpoint, model, opt, step=step, train_loss=metrics["train_loss"],
                            tokens_per_second=metrics["tokens_per_second"], eval=metrics["eval"],
                            scheduler=scheduler.state_dict(), rng_state=backend.get_rng_state())

    xp = backend.xp_for(args.device)
    bar = progress(args.steps, start_step, args.no_progress)
    model.train()
    for step in range(start_step, args.steps):
        t0 = time.perf_counter()
        inputs, targets = batcher.batch(step)
        opt.zero_grad()
        loss = model.loss(xp.asarray(inputs), xp.asarray(targets))
        loss.backward()
        opt.step()
        scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            kept = (f"; the last good checkpoint is {args.checkpoint}"
                    if args.checkpoint and os.path.exists(args.checkpoint) else "")
            raise AnomalyError(f"training diverged: loss is {value} at step {step + 1} (try a lower --lr){kept}")
        tokens_per_second = inputs.size / (time.perf_counter() - t0)
        metrics["train_loss"].append(value)
        metrics["tokens_per_second"].append(tokens_per_second)
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            heldout_loss, accuracy = evaluate(model, batcher)
            metrics["eval"].append({"step": done, "loss": heldout_loss, "accuracy": accuracy})
            message = f"step {done}: held-out loss {heldout_loss:.3f}, masked-token accuracy {accuracy:.3f}"
            (bar.write if bar is not None and not args.no_progress else print)(message)
        if bar is not None:
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_second:,.0f}", refresh=False)
            bar.update(1)
        elif done % 10 == 0:
            print(f"step {done}/{args.steps} loss {value:.3f} {tokens_per_second:,.0f} tok/s")
        if args.save_every and done % args.save_every == 0:
            save(done)
    if bar is not None:
        bar.close()
    save(args.steps)
    return model, vocab, batcher, metrics


def report(args, model, vocab, batcher, metrics):
    out = args.out
    embeddings = backend.asnumpy(model.embedding.weight.data).astype(np.float64)
    n = export_projector(out, embeddings, vocab, args.export_rows)
    print(f"wrote {n} embeddings of width {embeddings.shape[1]} to {out}/values.tsv and {out}/names.tsv: "
          "open https://projector.tensorflow.org, click 'Load', and choose values.tsv, then names.tsv as metadata")

    frequent = [w for w in vocab.itos[5:] if w.isalpha()][:8]
    if args.corpus == BUILTIN:
        frequent = ["red", "three", "cat", "bread", "kitchen", "alice", "monday", "ate"]
    neighbours = nearest_neighbours(embeddings, vocab.itos, frequent, k=5)
    lines = [f"{w:>12}: " + ", ".join(f"{n} ({c:.2f})" for n, c in ns) for w, ns in neighbours.items()]
    print("nearest neighbours (cosine):\n" + "\n".join(lines))
    with open(os.path.join(out, "neighbours.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    if metrics["eval"]:
        last = metrics["eval"][-1]
        metrics["final_heldout_loss"], metrics["final_masked_accuracy"] = last["loss"], last["accuracy"]
    metrics["frequency_baseline_accuracy"] = frequency_baseline(batcher)
    print(f"masked-token accuracy {metrics.get('final_masked_accuracy', float('nan')):.3f} "
          f"(always predicting the most frequent word: {metrics['frequency_baseline_accuracy']:.3f})")
    if args.corpus == BUILTIN:
        purity = neighbour_purity(embeddings, vocab.itos, word_class_of(), k=5)
        metrics["neighbour_class_purity"] = purity
        print(f"neighbour class purity: {purity:.3f} (share of each class word's 5 nearest neighbours in its class; "
              f"chance is about 0.1)")

    demo = fill_mask(model, vocab, FILL_MASK_BUILTIN if args.corpus == BUILTIN else FILL_MASK_FRENCH, args.seq_len)
    print("fill-mask (top 5):\n" + "\n".join(demo))
    with open(os.path.join(out, "fill_mask.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(demo) + "\n")

    tps = metrics["tokens_per_second"]
    metrics["mean_tokens_per_second"] = float(np.mean(tps[len(tps) // 10:])) if tps else 0.0
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    plot_losses(os.path.join(out, "loss.png"), metrics)
    print(f"wrote {out}/metrics.json, {out}/loss.png, {out}/neighbours.txt, {out}/fill_mask.txt")


def main(argv=None):
    args = parse_args(argv)
    try:
        started = time.time()
        model, vocab, batcher, metrics = run(args)
        report(args, model, vocab, batcher, metrics)
        print(f"done in {time.time() - started:.0f} s")
    except (TinygradNLPError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted" + (f"; the last checkpoint is {args.checkpoint}" if args.checkpoint else ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
