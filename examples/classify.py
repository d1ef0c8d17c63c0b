"""Train a Transformer sentiment classifier on the [CLS] token and watch the [CLS]
embeddings of positive and negative reviews move apart, epoch by epoch.

    python examples/classify.py                                 # built-in corpus, about a minute
    python examples/classify.py --data imdb_small_3000.csv --tutorial
    python examples/classify.py --predict "not good at all" --resume runs/classify/model.npz

The classifier tutorial's setting (--tutorial): width 256, 4 heads, 4 post-norm layers,
feed-forward 512, sequence 256, dropout 0.4, Adam lr 1e-4, 20 epochs, batch 32, 600+600
training / 100+100 test reviews. The defaults keep the post-norm [CLS] design at width
64, 2 layers, feed-forward 128, sequence 48, dropout 0.1 and AdamW 2e-3 for 10 epochs, so
the built-in corpus trains in about a minute on 2 CPU cores.

Outputs in --out: metrics.json, cls_embeddings.gif (one frame per epoch, the untrained
model first), cls_embeddings.png (the last frame), confusion.txt, samples.txt, and the
checkpoint (--checkpoint, default OUT/model.npz).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import tinygrad_nlp.functional as F
from tinygrad_nlp import TinygradNLPError, backend, checkpoint, distributed, graph, manual_seed, report
from tinygrad_nlp.data import Vocab, WordPieceTokenizer, encode_reviews, load_reviews, tokenize
from tinygrad_nlp.errors import DataError
from tinygrad_nlp.models import TextClassifier
from tinygrad_nlp.nn import DataParallel, predict_in_batches
from tinygrad_nlp.optim import OPTIMIZERS, create_optimizer
from tinygrad_nlp.tutorials import CLASSIFIER_TUTORIAL

CLASS_NAMES = ["negative", "positive"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="builtin", help="'builtin' (default: generated reviews with negation), a CSV with "
                   "text,label columns, an aclImdb folder, or 'imdb' to download the official aclImdb_v1.tar.gz")
    p.add_argument("--cache-dir", default=None, help="where --data imdb is downloaded (~/.cache/tinygrad_nlp)")
    p.add_argument("--tutorial", action="store_true", help="the tutorial's full setting (see above)")
    p.add_argument("--train-per-class", type=int, default=1000, help="training reviews per class (1000; tutorial 600)")
    p.add_argument("--test-per-class", type=int, default=250, help="test reviews per class (250; tutorial 100)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (10; tutorial 20)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (32, as the tutorial)")
    p.add_argument("--seq-len", type=int, default=48, help="tokens per review incl. [CLS]/[SEP] (48; tutorial 256)")
    p.add_argument("--d-model", type=int, default=64, help="model width (64; tutorial 256)")
    p.add_argument("--n-heads", type=int, default=4, help="attention heads (4, as the tutorial)")
    p.add_argument("--n-layers", type=int, default=2, help="encoder layers (2; tutorial 4)")
    p.add_argument("--d-ff", type=int, default=128, help="feed-forward width (128; tutorial 512)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout (0.1; tutorial 0.4)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (2e-3; tutorial 1e-4)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adamw", help="optimizer (adamw; tutorial adam)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="weight decay (0.01)")
    p.add_argument("--norm-first", action="store_true", help="pre-norm layers (default post-norm, as the tutorial)")
    p.add_argument("--vocab-size", type=int, default=20000, help="largest vocabulary incl. special tokens (20000)")
    p.add_argument("--tokenizer", choices=["words", "wordpiece"], default="words",
                   help="words (the tutorial's word splitter) or wordpiece (BERT's subwords, trained on the training "
                        "reviews; needs the tokenizers extra)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--threads", type=int, default=1, help="replicas training at once in threads, each on its share "
                   "of the batch (1; on a CPU with N cores N is faster, at more memory: benchmarks/RESULTS.md)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init, dropout and shuffling (0)")
    p.add_argument("--out", default="runs/classify", help="output folder (runs/classify)")
    p.add_argument("--checkpoint", default=None, help="where to save the trained model (default OUT/model.npz)")
    p.add_argument("--resume", default=None, help="start from this checkpoint (with --predict: the model to use)")
    p.add_argument("--plot", choices=["tsne", "pca", "none"], default="tsne", help="2-D projection of [CLS] vectors")
    p.add_argument("--plot-points", type=int, default=400, help="training reviews shown in each frame (400)")
    p.add_argument("--predict", default=None, metavar="TEXT", help="print the class and probability of TEXT and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--graph", default=None, metavar="PATH", help="draw the backward graph of one training step of a "
                   "one-layer model to PATH (.svg, .png or .dot), print what it saves, and exit")
    args = p.parse_args(argv)
    if args.tutorial:
        vars(args).update(CLASSIFIER_TUTORIAL)
    args.checkpoint = args.checkpoint or os.path.join(args.out, "model.npz")
    return args


def probabilities(model, ids, mask):
    return predict_in_batches(model, lambda *rows: F.softmax(model(*rows)), ids, mask)


def text_encoder(folder, args, train_texts=None, save=True):
    """(vocabulary size, texts -> (ids, mask)): the tokenizer learnt from ``train_texts``
    and saved in ``folder``, or, without texts, the one saved there."""
    if args.tokenizer == "wordpiece" or (train_texts is None and os.path.exists(os.path.join(folder, "tokenizer.json"))):
        if train_texts is None:
            tokenizer = WordPieceTokenizer.from_pretrained(folder)
        else:
            tokenizer = WordPieceTokenizer.train(train_texts, args.vocab_size)
            if save:
                tokenizer.save(folder)

        def encode(texts):
            batch = tokenizer.encode(texts, args.seq_len)
            return batch["input_ids"], batch["attention_mask"] == 1
        return len(tokenizer), encode
    if train_texts is None:
        vocab = Vocab.load(os.path.join(folder, "vocab.txt"))
    else:
        vocab = Vocab.build((tokenize(t) for t in train_texts), max_size=args.vocab_size)
        if save:
            vocab.save(os.path.join(folder, "vocab.txt"))
    return len(vocab), lambda texts: encode_reviews(texts, vocab, args.seq_len)


def predict(args):
    if not args.resume:
        raise DataError("--predict needs --resume PATH (a checkpoint written by a training run)")
    model = checkpoint.load_model(args.resume, args.device)
    args.seq_len = model.config["max_len"]
    _, encode = text_encoder(os.path.dirname(os.path.abspath(args.resume)), args)
    p = probabilities(model, *encode([args.predict]))[0]
    print(f"{CLASS_NAMES[p.argmax()]} (probability {p.max():.3f})")


def train(args, comm):
    backend.check_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    manual_seed(args.seed)
    say = print if comm.is_root else lambda *_, **__: None
    train_texts, train_labels, test_texts, test_labels = load_reviews(
        args.data, args.train_per_class, args.test_per_class, args.seed, args.cache_dir)
    vocab_size, encode = text_encoder(args.out, args, train_texts, save=comm.is_root)
    train_ids, train_mask = encode(train_texts)
    test = (test_texts, *encode(test_texts), test_labels)
    say(f"data: {len(train_texts)} training / {len(test_texts)} test reviews, {args.tokenizer} vocabulary {vocab_size}")
    model = TextClassifier(vocab_size, 2, args.d_model, args.n_heads, args.d_ff, 1 if args.graph else args.n_layers,
                           max_len=args.seq_len, dropout=args.dropout, norm_first=args.norm_first).to(args.device)
    if args.graph:
        rows = [backend.to_device(a[:args.batch_size], args.device) for a in (train_ids, train_mask, train_labels)]
        print(graph.draw_training_step(args.graph, lambda: F.cross_entropy(model(*rows[:2]), rows[2]),
                                       model.named_parameters()))
        return None
    optimizer = create_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    if args.resume:
        checkpoint.load(args.resume, model, optimizer)
    comm.broadcast_parameters(model.parameters())  # data-parallel: every process starts from rank 0's weights
    if comm.world_size > 1:
        manual_seed(args.seed + 1 + comm.rank)  # each process its own dropout masks
    say(f"model: {model.num_parameters():,} parameters, {args.n_layers} {'pre' if args.norm_first else 'post'}-norm "
          f"layers, width {args.d_model}, {args.n_heads} heads")
    saver, shuffle = checkpoint.Checkpointer(args.checkpoint), np.random.default_rng(args.seed)
    shown = np.random.default_rng(args.seed + 1).permutation(len(train_ids))[:args.plot_points]
    shares = [len(range(args.batch_size)[comm.share(args.batch_size, r)]) for r in range(comm.world_size)]
    frames, metrics = [], {"config": vars(args), "seed": args.seed, "world_size": comm.world_size,
                           "rows_per_process": shares, "epochs": []}

    def test_accuracy_and_frame(epoch):
        if not comm.is_root:
            return None
        accuracy = float((probabilities(model, *test[1:3]).argmax(1) == test_labels).mean())
        if args.plot != "none":
            points = report.project_2d(predict_in_batches(model, model.embed, train_ids[shown], train_mask[shown]),
                                       args.plot, args.seed)
            title = f"[CLS] embeddings ({args.plot}), epoch {epoch}: test accuracy {accuracy:.1%}"
            frames.append(report.scatter_frame(points, train_labels[shown], CLASS_NAMES, title))
        return accuracy

    parallel = DataParallel(model, args.threads)  # with --threads N, the process's rows shared out again
    right = []  # correct predictions of each replica's rows (list.append is safe from threads)

    def loss_of(replica, ids, mask, labels):
        logits = replica(ids, mask)
        right.append(int((logits.numpy().argmax(1) == backend.asnumpy(labels)).sum()))
        return F.cross_entropy(logits, labels)

    test_accuracy_and_frame(0)
    for epoch in range(1, args.epochs + 1):
        started, losses = time.perf_counter(), []
        order = shuffle.permutation(len(train_ids))
        bar = report.progress_bar(-(-len(order) // args.batch_size), disable=args.no_progress or not comm.is_root,
                                  leave=False, desc=f"epoch {epoch}/{args.epochs}")
        for rows in np.array_split(order, range(args.batch_size, len(order), args.batch_size)):
            rows = rows[comm.share(len(rows))]  # this process's share of the global batch
            optimizer.zero_grad()
            loss = parallel.backward(loss_of, *(backend.to_device(a[rows], args.device)
                                                for a in (train_ids, train_mask, train_labels)))
            total = comm.all_reduce_gradients(model.parameters(), len(rows))  # a mean over examples: weight by count
            optimizer.step()
            losses.append(distributed.weighted_mean(comm, loss, len(rows), total))
            saver.check_loss(losses[-1], f"in epoch {epoch}")
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        correct = comm.sum(sum(right))  # every process's rows of the epoch
        right.clear()
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "train_accuracy": correct / len(train_ids),
               "test_accuracy": test_accuracy_and_frame(epoch), "seconds": time.perf_counter() - started}
        metrics["epochs"].append(row)
        if comm.is_root:
            print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, train accuracy {row['train_accuracy']:.3f}, "
                  f"test accuracy {row['test_accuracy']:.3f} ({row['seconds']:.1f} s)")
            saver.save(model, optimizer, f"epoch {epoch}", epoch=epoch)  # a divergence keeps the last good epoch
    if not metrics["epochs"] and comm.is_root:
        saver.save(model, label="epoch 0")
    return model, test, frames, metrics


def write_report(args, model, test, frames, metrics):
    texts, ids, mask, labels = test
    p = probabilities(model, ids, mask)
    text, accuracy = report.confusion_report(labels, p.argmax(1), CLASS_NAMES)
    samples = [f"P(positive)={p[i, 1]:.3f} true={CLASS_NAMES[labels[i]]}: {texts[i][:200]}"
               for i in range(min(8, len(texts)))]
    print(text + "\n".join(samples[:4]))
    metrics["final_test_accuracy"] = metrics["epochs"][-1]["test_accuracy"] if metrics["epochs"] else None
    for name, content in (("confusion.txt", text), ("samples.txt", "\n".join(samples) + "\n"),
                          ("metrics.json", json.dumps(metrics, indent=1))):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(content)
    if frames:
        report.save_gif(os.path.join(args.out, "cls_embeddings.gif"), frames)
        frames[-1].save(os.path.join(args.out, "cls_embeddings.png"))
    print(f"wrote {args.out}/metrics.json, cls_embeddings.gif ({len(frames)} frames), cls_embeddings.png, "
          f"confusion.txt, samples.txt and the model to {args.checkpoint}")


def main(argv=None):
    started, comm = time.time(), distributed.Communicator()
    try:
        args = parse_args(argv)
        if args.predict is not None:
            predict(args)
            return 0
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
