"""Train a BERT-style masked-language model and export its word embeddings.

    python examples/mlm.py                          # built-in corpus, under a minute on 2 cores
    python examples/mlm.py --corpus europarl.fr.txt --tutorial --steps 10000
    mpirun -n 2 python -m mpi4py examples/mlm.py    # data-parallel: each process half of every batch

--tutorial: the MLM tutorial's batch 128, 8 pre-norm layers, Adam lr 1e-4, untied head (the
defaults keep its width 128, 8 heads, feed-forward 512 and sequence 20, with 4 layers and
batch 64). Outputs in --out: values.tsv + names.tsv (TensorFlow Embedding Projector),
metrics.json, loss.png, neighbours.txt, fill_mask.txt; the checkpoint with --checkpoint.
"""
import os
import time

import numpy as np

from tinygrad_nlp import backend, checkpoint, cli, graph, manual_seed, report
from tinygrad_nlp.data import N_SPECIALS, MLMBatcher, Vocab, encode_stream, read_lines, tokenize
from tinygrad_nlp.data.evaluate import neighbour_lines, neighbour_purity
from tinygrad_nlp.data.generated import FILL_MASK_SENTENCES, PROBE_WORDS, word_class_corpus, word_class_of
from tinygrad_nlp.models import MaskedLanguageModel
from tinygrad_nlp.nn import DataParallel
from tinygrad_nlp.optim import OPTIMIZERS, LRScheduler, create_optimizer, warmup_schedule
from tinygrad_nlp.tutorials import MLM_TUTORIAL

FILL_MASK = ["la <mask> est close .", "je voudrais <mask> la commission .", "nous devons <mask> ce rapport ."]
OPTIONS = [
    ("--corpus", "builtin", "a UTF-8 text file (one sentence per line), a folder of .txt files, or 'builtin'"),
    ("--builtin-sentences", 20000, "sentences in the built-in corpus, whose word classes are known"),
    ("--tutorial", False, "the tutorial's full setting (see above)"), ("--steps", 400, "training steps"),
    ("--batch-size", 64, "rows per batch (tutorial 128)"), ("--seq-len", 20, "tokens per row"),
    ("--d-model", 128, "model width"), ("--n-heads", 8, "attention heads"), ("--n-layers", 4, "layers (tutorial 8)"),
    ("--d-ff", 512, "feed-forward width"), ("--vocab-size", 40000, "largest vocabulary, special tokens included"),
    ("--dropout", 0.1, "dropout"), ("--lr", 2e-3, "peak learning rate (tutorial 1e-4)"), ("--weight-decay", 1e-4, "L2"),
    ("--optimizer", sorted(OPTIMIZERS), "adam", "optimizer"), ("--warmup", 30, "linear learning-rate warm-up steps"),
    ("--bert-masking", False, "BERT's 80/10/10 rule for the chosen tokens (default: all become <mask>)"),
    ("--tie-weights", True, "share the embedding table with the LM head (--no-tie-weights as the tutorial)"),
    ("--out", "runs/mlm", "output folder"), ("--export-rows", 3000, "rows of values.tsv/names.tsv"),
    ("--checkpoint", None, "written every --save-every steps and at the end"), ("--save-every", 0, "0: at the end"),
    ("--resume", None, "continue the run saved in this checkpoint, exactly"),
    ("--eval-every", 50, "held-out loss and masked-token accuracy every N steps"),
] + cli.TRAINING_OPTIONS


def parse_args(argv=None):
    args = cli.parser(__doc__, OPTIONS).parse_args(argv)
    if args.tutorial:
        vars(args).update({k: v for k, v in MLM_TUTORIAL.items() if k != "mask_prob"}, tie_weights=False)
    cli.require_positive(args, "steps", "batch_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff", "eval_every")
    return args


def load_data(args):
    sentences = word_class_corpus(args.builtin_sentences, seed=args.seed) if args.corpus == "builtin" \
        else read_lines(args.corpus)
    tokens = [tokenize(s) for s in sentences]
    vocab = Vocab.build(tokens, max_size=args.vocab_size)
    batcher = MLMBatcher(encode_stream(tokens, vocab), vocab, args.seq_len, args.batch_size, seed=args.seed,
                         bert_masking=args.bert_masking)
    print(f"corpus: {len(sentences)} sentences, vocabulary {len(vocab)}; {len(batcher.train_rows)} training rows, "
          f"{len(batcher.heldout_rows)} held-out rows of {args.seq_len}")
    return vocab, batcher


def build_model(args, vocab, n_layers):
    return MaskedLanguageModel(len(vocab), args.d_model, args.n_heads, args.d_ff, n_layers, max_len=args.seq_len,
                               dropout=args.dropout, tie_weights=args.tie_weights).to(args.device)


def draw_graph(args):
    manual_seed(args.seed)
    vocab, batcher = load_data(args)
    model = build_model(args, vocab, n_layers=1)
    ids, targets = (backend.to_device(a, args.device) for a in batcher.batch(0))
    print(graph.draw_training_step(args.graph, lambda: model.loss(ids, targets), model.named_parameters()))


def train(args):
    manual_seed(args.seed)
    vocab, batcher = load_data(args)
    model = DataParallel(build_model(args, vocab, args.n_layers), threads=args.threads)  # processes x threads
    optimizer = create_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    scheduler = LRScheduler(optimizer, warmup_schedule(args.warmup))
    root, saver = model.comm.is_root, checkpoint.Checkpointer(args.checkpoint)
    history = {"train_loss": [], "eval": []}
    start = checkpoint.resume(args.resume, model, optimizer, scheduler, history) if args.resume else 0
    print(f"model: {model.num_parameters():,} parameters, {args.n_layers} pre-norm layers, {model}")

    save = lambda step: checkpoint.save_step(saver, model, optimizer, scheduler, step, history)
    bar = report.progress_bar(args.steps, start, args.no_progress or not root, unit="step")
    started = time.perf_counter()
    for step in range(start + 1, args.steps + 1):
        ids, targets = batcher.batch(step - 1)
        optimizer.zero_grad()
        loss = model.loss(ids, targets)
        loss.backward()
        optimizer.step()
        scheduler.step()
        saver.check_loss(loss.item(), f"at step {step}")
        history["train_loss"].append(loss.item())
        if root and (step % args.eval_every == 0 or step == args.steps):
            heldout_loss, accuracy = model.evaluate(batcher.heldout_batches())
            history["eval"].append({"step": step, "loss": heldout_loss, "accuracy": accuracy})
            bar.write(f"step {step}: held-out loss {heldout_loss:.3f}, masked-token accuracy {accuracy:.3f}")
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.update(1)
        if args.save_every and step % args.save_every == 0:
            save(step)
    bar.close()
    history["tokens_per_second"] = (args.steps - start) * args.batch_size * args.seq_len / (time.perf_counter() - started)
    if root:
        save(args.steps)
        write_report(args, model.module, vocab, batcher, dict(history, threads=model.threads),
                     model.rows_per_process(args.batch_size))


def write_report(args, model, vocab, batcher, history, rows_per_process):
    out, builtin = args.out, args.corpus == "builtin"
    embeddings = model.embedding.weight.numpy().astype(np.float64)
    n = report.export_projector(out, embeddings, vocab.itos, args.export_rows)
    words = PROBE_WORDS if builtin else [w for w in vocab.itos[N_SPECIALS:] if w.isalpha()][:8]
    neighbours = neighbour_lines(embeddings, vocab.itos, words, k=5)
    demo = model.fill_mask_lines(vocab, FILL_MASK_SENTENCES if builtin else FILL_MASK, args.seq_len)
    metrics = dict(config=vars(args), seed=args.seed, vocab_size=len(vocab), world_size=len(rows_per_process),
                   rows_per_process=rows_per_process, **history, final_heldout_loss=history["eval"][-1]["loss"],
                   final_masked_accuracy=history["eval"][-1]["accuracy"],
                   frequency_baseline_accuracy=batcher.frequency_baseline())
    print("nearest neighbours (cosine):\n" + "\n".join(neighbours) + "\nfill-mask (top 5):\n" + "\n".join(demo) +
          f"\nmasked-token accuracy {metrics['final_masked_accuracy']:.3f} "
          f"(always the most frequent word: {metrics['frequency_baseline_accuracy']:.3f})")
    if builtin:
        metrics["neighbour_class_purity"] = purity = neighbour_purity(embeddings, vocab.itos, word_class_of(), k=5)
        print(f"neighbour class purity: {purity:.3f} (of each class word's 5 nearest neighbours; chance about 0.1)")
    report.write_outputs(out, {"neighbours.txt": "\n".join(neighbours) + "\n", "fill_mask.txt": "\n".join(demo) + "\n",
                               "metrics.json": metrics, "vocab.txt": "\n".join(vocab.itos) + "\n"})
    report.plot_losses(os.path.join(out, "loss.png"), history["train_loss"], history["eval"], "cross-entropy (masked tokens)")
    print(f"wrote {out}/metrics.json, loss.png, neighbours.txt, fill_mask.txt, and {n} embeddings as values.tsv + "
          "names.tsv: 'Load' them at https://projector.tensorflow.org")


def main(argv=None):
    return cli.run(lambda: (lambda args: draw_graph(args) if args.graph else train(args))(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
