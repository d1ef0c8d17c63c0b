"""Train a BERT-style masked-language model and export its word embeddings.

    python examples/mlm.py                          # built-in corpus, about a minute on 2 cores
    python examples/mlm.py --corpus europarl.fr.txt --tutorial --steps 10000

The MLM tutorial's setting (--tutorial): batch 128, sequence 20, width 128, 8 heads, 8
pre-norm layers, feed-forward 512, vocabulary up to 40,000, Adam (lr 1e-4, weight decay
1e-4). The defaults keep its width, heads, feed-forward and sequence length, with 4
layers and batch 64, so the built-in corpus trains in about a minute on 2 CPU cores.

Outputs in --out: values.tsv + names.tsv (TensorFlow Embedding Projector), metrics.json,
loss.png, neighbours.txt, fill_mask.txt, and the checkpoint if --checkpoint is given.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from tinygrad_nlp import TinygradNLPError, backend, checkpoint, distributed, graph, manual_seed, report
from tinygrad_nlp.data import MLMBatcher, Vocab, encode_stream, read_lines, tokenize, word_class_corpus, word_class_of
from tinygrad_nlp.data.evaluate import nearest_neighbours, neighbour_purity
from tinygrad_nlp.errors import DataError
from tinygrad_nlp.models import MaskedLanguageModel
from tinygrad_nlp.nn import DataParallel
from tinygrad_nlp.optim import OPTIMIZERS, LRScheduler, create_optimizer, warmup_schedule
from tinygrad_nlp.tutorials import MLM_TUTORIAL

FILL_MASK = {"builtin": ["alice ate three <mask> apples at the market on monday .", "the old <mask> ran to the garden .",
                         "on friday , tom and emma cooked some <mask> .", "the kitchen is red and the <mask> is blue ."],
             "corpus": ["la <mask> est close .", "je voudrais <mask> la commission .", "nous devons <mask> ce rapport ."]}
PROBE_WORDS = ["red", "three", "cat", "bread", "kitchen", "alice", "monday", "ate"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="builtin", help="a UTF-8 text file (one sentence per line), a folder of .txt "
                   "files, or 'builtin' (default: a generated corpus whose word classes are known)")
    p.add_argument("--builtin-sentences", type=int, default=20000, help="sentences in the built-in corpus (20000)")
    p.add_argument("--tutorial", action="store_true", help="the tutorial's full setting (see above)")
    p.add_argument("--steps", type=int, default=400, help="training steps (400)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per batch (64; tutorial 128)")
    p.add_argument("--seq-len", type=int, default=20, help="tokens per row (20, as the tutorial)")
    p.add_argument("--d-model", type=int, default=128, help="model width (128, as the tutorial)")
    p.add_argument("--n-heads", type=int, default=8, help="attention heads (8, as the tutorial)")
    p.add_argument("--n-layers", type=int, default=4, help="encoder layers (4; tutorial 8)")
    p.add_argument("--d-ff", type=int, default=512, help="feed-forward width (512, as the tutorial)")
    p.add_argument("--vocab-size", type=int, default=40000, help="largest vocabulary, special tokens included (40000)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout probability (0.1)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3; tutorial 1e-4 over more steps)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay (1e-4, as the tutorial)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="optimizer (adam)")
    p.add_argument("--warmup", type=int, default=30, help="linear learning-rate warm-up steps (30)")
    p.add_argument("--bert-masking", action="store_true", help="BERT's 80/10/10 rule for the chosen tokens "
                   "(default: all become <mask>, as the tutorial)")
    p.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="share the embedding table with the LM head (default on; --no-tie-weights as the tutorial)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--threads", type=int, default=1, help="replicas training at once in threads, each on its share "
                   "of the batch (1; on a CPU with N cores N is faster, at more memory: benchmarks/RESULTS.md)")
    p.add_argument("--seed", type=int, default=0, help="seed for the corpus split, batches, init and dropout (0)")
    p.add_argument("--out", default="runs/mlm", help="output folder (runs/mlm)")
    p.add_argument("--checkpoint", default=None, help="checkpoint path written every --save-every steps and at the end")
    p.add_argument("--save-every", type=int, default=0, help="save the checkpoint every N steps (0: only at the end)")
    p.add_argument("--resume", default=None, help="continue the run saved in this checkpoint, exactly")
    p.add_argument("--eval-every", type=int, default=50, help="held-out loss and masked accuracy every N steps (50)")
    p.add_argument("--export-rows", type=int, default=3000, help="rows of values.tsv/names.tsv (3000, as the tutorial)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (plain log lines instead)")
    p.add_argument("--graph", default=None, metavar="PATH", help="draw the backward graph of one training step of a "
                   "one-layer model to PATH (.svg, .png or .dot), print what it saves, and exit")
    args = p.parse_args(argv)
    if args.tutorial:
        vars(args).update({k: v for k, v in MLM_TUTORIAL.items() if k != "mask_prob"}, tie_weights=False)
    for name in ("steps", "batch_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff", "eval_every"):
        if getattr(args, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def scored_tokens(ids, targets):
    return (targets != -100).sum()


def train(args, comm):
    backend.check_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    manual_seed(args.seed)
    say = print if comm.is_root else lambda *_, **__: None
    builtin = args.corpus == "builtin"
    sentences = word_class_corpus(args.builtin_sentences, seed=args.seed) if builtin else read_lines(args.corpus)
    vocab = Vocab.build((tokenize(s) for s in sentences), max_size=args.vocab_size)
    if comm.is_root:
        vocab.save(os.path.join(args.out, "vocab.txt"))
    batcher = MLMBatcher(encode_stream(sentences, vocab), vocab, args.seq_len, args.batch_size, seed=args.seed,
                         bert_masking=args.bert_masking)
    say(f"corpus: {len(sentences)} sentences, vocabulary {len(vocab)}; {len(batcher.train_rows)} training rows, "
          f"{len(batcher.heldout_rows)} held-out rows of {args.seq_len}")
    layers = 1 if args.graph else args.n_layers
    model = MaskedLanguageModel(len(vocab), args.d_model, args.n_heads, args.d_ff, layers, max_len=args.seq_len,
                                dropout=args.dropout, tie_weights=args.tie_weights).to(args.device)
    if args.graph:
        ids, targets = (backend.to_device(a, args.device) for a in batcher.batch(0))
        print(graph.draw_training_step(args.graph, lambda: model.loss(ids, targets), model.named_parameters()))
        return None
    optimizer = create_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    scheduler = LRScheduler(optimizer, warmup_schedule(args.warmup))
    say(f"model: {model.num_parameters():,} parameters, {args.n_layers} pre-norm layers, device {args.device}, "
        f"{comm.world_size} process(es)")
    shares = [len(range(args.batch_size)[comm.share(args.batch_size, r)]) for r in range(comm.world_size)]
    metrics = {"config": vars(args), "seed": args.seed, "vocab_size": len(vocab), "world_size": comm.world_size,
               "rows_per_process": shares, "train_loss": [], "tokens_per_second": [], "eval": []}
    saver, start = checkpoint.Checkpointer(args.checkpoint), 0
    if args.resume:
        extra = checkpoint.load(args.resume, model, optimizer)
        start = int(extra["step"])
        metrics.update({k: list(extra[k]) for k in ("train_loss", "tokens_per_second", "eval")})
        scheduler.load_state_dict(extra["scheduler"])
        backend.set_rng_state(extra["rng_state"])
        say(f"resumed from {args.resume} at step {start}")

    def save(step):
        history = {k: metrics[k] for k in ("train_loss", "tokens_per_second", "eval")}
        saver.save(model, optimizer, f"step {step}", step=step, scheduler=scheduler.state_dict(),
                   rng_state=backend.get_rng_state(), **history)

    comm.broadcast_parameters(model.parameters())  # data-parallel: every process starts from rank 0's weights
    if comm.world_size > 1:
        manual_seed(args.seed + 1 + comm.rank)  # each process its own dropout masks
    parallel = DataParallel(model, args.threads)  # with --threads N, the process's rows shared out again
    bar = report.progress_bar(args.steps, start, args.no_progress or not comm.is_root, unit="step")
    for step in range(start + 1, args.steps + 1):
        started = time.perf_counter()
        inputs, targets = batcher.batch(step - 1)
        mine = comm.share(len(inputs))  # this process's rows of the global batch
        optimizer.zero_grad()
        loss = parallel.backward(lambda replica, ids, targets: replica.loss(ids, targets),
                                 backend.to_device(inputs[mine], args.device),
                                 backend.to_device(targets[mine], args.device), count=scored_tokens)
        scored = int((targets[mine] != -100).sum())  # the loss is a mean over scored tokens: weight by their count
        total = comm.all_reduce_gradients(model.parameters(), scored)
        optimizer.step()
        scheduler.step()
        step_loss = distributed.weighted_mean(comm, loss, scored, total)
        saver.check_loss(step_loss, f"at step {step}")
        metrics["train_loss"].append(step_loss)
        metrics["tokens_per_second"].append(inputs.size / (time.perf_counter() - started))
        if comm.is_root and (step % args.eval_every == 0 or step == args.steps):
            heldout_loss, accuracy = model.evaluate(batcher.heldout_batches())
            metrics["eval"].append({"step": step, "loss": heldout_loss, "accuracy": accuracy})
            bar.write(f"step {step}: held-out loss {heldout_loss:.3f}, masked-token accuracy {accuracy:.3f}")
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{metrics['tokens_per_second'][-1]:,.0f}", refresh=False)
        bar.update(1)
        if comm.is_root and args.save_every and step % args.save_every == 0:
            save(step)
    bar.close()
    if comm.is_root:
        save(args.steps)
    return model, vocab, batcher, metrics


def write_report(args, model, vocab, batcher, metrics):
    out, builtin = args.out, args.corpus == "builtin"
    embeddings = model.embedding.weight.numpy().astype(np.float64)
    n = report.export_projector(out, embeddings, vocab.itos, args.export_rows)
    print(f"wrote {n} embeddings to {out}/values.tsv and {out}/names.tsv: open https://projector.tensorflow.org, "
          "click 'Load', and choose values.tsv, then names.tsv as metadata")
    words = PROBE_WORDS if builtin else [w for w in vocab.itos[5:] if w.isalpha()][:8]
    lines = [f"{w:>12}: " + ", ".join(f"{n} ({c:.2f})" for n, c in near)
             for w, near in nearest_neighbours(embeddings, vocab.itos, words, k=5).items()]
    print("nearest neighbours (cosine):\n" + "\n".join(lines))
    with open(os.path.join(out, "neighbours.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    last = metrics["eval"][-1]
    metrics.update(final_heldout_loss=last["loss"], final_masked_accuracy=last["accuracy"],
                   frequency_baseline_accuracy=batcher.frequency_baseline())
    print(f"masked-token accuracy {last['accuracy']:.3f} "
          f"(always predicting the most frequent word: {metrics['frequency_baseline_accuracy']:.3f})")
    if builtin:
        metrics["neighbour_class_purity"] = neighbour_purity(embeddings, vocab.itos, word_class_of(), k=5)
        print(f"neighbour class purity: {metrics['neighbour_class_purity']:.3f} (share of each class word's 5 nearest "
              "neighbours in its class; chance is about 0.1)")

    demo = []
    for sentence in FILL_MASK["builtin" if builtin else "corpus"]:
        ids = vocab.encode(tokenize(sentence))[: args.seq_len]
        if vocab.mask_id in ids:
            top, p = model.fill_mask(ids, int(np.flatnonzero(ids == vocab.mask_id)[0]), exclude=range(5))
            demo.append(f"{sentence}\n    " + "  ".join(f"{vocab.itos[i]} ({q:.2f})" for i, q in zip(top, p)))
    print("fill-mask (top 5):\n" + "\n".join(demo))
    with open(os.path.join(out, "fill_mask.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(demo) + "\n")

    tps = metrics["tokens_per_second"]
    metrics["mean_tokens_per_second"] = float(np.mean(tps[len(tps) // 10:]))
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    report.plot_losses(os.path.join(out, "loss.png"), metrics["train_loss"], metrics["eval"],
                       "cross-entropy (masked tokens)")
    print(f"wrote {out}/metrics.json, {out}/loss.png, {out}/neighbours.txt, {out}/fill_mask.txt")


def main(argv=None):
    started, comm = time.time(), distributed.Communicator()
    try:
        args = parse_args(argv)
        comm = distributed.init(args.device)
        trained = train(args, comm)
        if trained is not None and comm.is_root:
            write_report(args, *trained)
    except (TinygradNLPError, OSError) as e:
        if comm.world_size > 1:
            comm.abort(f"error: {e}")  # ends every process of the job, not just this one
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not comm.is_root:
        return 0
    print(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
