"""Train a Transformer sentiment classifier on the [CLS] token and watch the [CLS]
embeddings of positive and negative reviews move apart, epoch by epoch.

    python examples/classify.py                                 # built-in corpus, about a minute
    python examples/classify.py --data imdb_small_3000.csv --tutorial
    python examples/classify.py --predict "not good at all" --resume runs/classify/model.npz

The classifier tutorial's full setting (--tutorial sets it): width 256, 4 heads, 4 post-norm
layers, feed-forward 512, sequence 256, dropout 0.4, Adam lr 1e-4, 20 epochs, batch 32,
600+600 training / 100+100 test reviews. The defaults keep the post-norm [CLS] design but
use width 64, 2 layers, feed-forward 128, sequence 48, dropout 0.1 and AdamW 2e-3 for 10
epochs, so the built-in corpus trains in about a minute on 2 CPU cores.

Outputs in --out: metrics.json, cls_embeddings.gif (one frame per epoch, the untrained
model first), cls_embeddings.png (the last frame), confusion.txt, samples.txt, and the
checkpoint (--checkpoint, default OUT/model.npz).
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

import tinygrad_nlp.functional as F  # noqa: E402
from tinygrad_nlp import TinygradNLPError, backend, checkpoint, manual_seed, no_grad  # noqa: E402
from tinygrad_nlp.data import (Vocab, balanced_split, download_imdb, encode_reviews, load_aclimdb,  # noqa: E402
                               load_csv, sentiment_corpus, tokenize)
from tinygrad_nlp.errors import AnomalyError, DataError  # noqa: E402
from tinygrad_nlp.models import TextClassifier  # noqa: E402
from tinygrad_nlp.optim import SGD, Adam, AdamW  # noqa: E402

BUILTIN = "builtin"
TUTORIAL = dict(d_model=256, n_heads=4, n_layers=4, d_ff=512, seq_len=256, dropout=0.4, lr=1e-4, optimizer="adam",
                epochs=20, batch_size=32, train_per_class=600, test_per_class=100, weight_decay=0.0)
CLASS_NAMES = ["negative", "positive"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=BUILTIN, help="'builtin' (default: generated reviews with negation), a CSV with "
                   "text,label columns, an aclImdb folder, or 'imdb' to download the official aclImdb_v1.tar.gz")
    p.add_argument("--cache-dir", default=None, help="where --data imdb is downloaded (~/.cache/tinygrad_nlp)")
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
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adamw", help="optimizer (adamw; tutorial adam)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="weight decay (0.01)")
    p.add_argument("--norm-first", action="store_true", help="pre-norm layers (default post-norm, as the tutorial)")
    p.add_argument("--vocab-size", type=int, default=20000, help="largest vocabulary incl. special tokens (20000)")
    p.add_argument("--tutorial", action="store_true", help="use the tutorial's full setting (see above)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init, dropout and shuffling (0)")
    p.add_argument("--out", default="runs/classify", help="output folder (runs/classify)")
    p.add_argument("--checkpoint", default=None, help="where to save the trained model (default OUT/model.npz)")
    p.add_argument("--resume", default=None, help="start from this checkpoint (with --predict: the model to use)")
    p.add_argument("--plot", choices=["tsne", "pca", "none"], default="tsne", help="2-D projection of [CLS] vectors")
    p.add_argument("--plot-points", type=int, default=400, help="training reviews shown in each frame (400)")
    p.add_argument("--predict", default=None, metavar="TEXT", help="print the class and probability of TEXT and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.tutorial:
        for k, v in TUTORIAL.items():
            setattr(args, k, v)
    return args


def load_data(args):
    """(train_texts, train_labels, test_texts, test_labels)."""
    if args.data == BUILTIN:
        n = args.train_per_class + args.test_per_class
        texts, labels = sentiment_corpus(4 * n, seed=args.seed)
    elif args.data == "imdb" or os.path.isdir(args.data):
        folder = download_imdb(args.cache_dir) if args.data == "imdb" else args.data
        if os.path.isdir(os.path.join(folder, "test")):
            tr_t, tr_l = load_aclimdb(folder, "train")
            te_t, te_l = load_aclimdb(folder, "test")
            tr, _ = balanced_split(tr_l, args.train_per_class, 0, args.seed)
            _, te = balanced_split(te_l, 0, args.test_per_class, args.seed)
            return [tr_t[i] for i in tr], tr_l[tr], [te_t[i] for i in te], te_l[te]
        texts, labels = load_aclimdb(folder, "train")
    else:
        texts, labels = load_csv(args.data)
    train, test = balanced_split(labels, args.train_per_class, args.test_per_class, args.seed)
    return [texts[i] for i in train], labels[train], [texts[i] for i in test], labels[test]


def batches(n, batch_size, rng=None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def predict_logits(model, ids, mask, batch_size=128):
    xp = backend.xp_for(model.device)
    model.eval()
    with no_grad():
        out = [model(xp.asarray(ids[b]), xp.asarray(mask[b])).numpy() for b in batches(len(ids), batch_size)]
    model.train()
    return np.concatenate(out)


def cls_vectors(model, ids, mask, batch_size=128):
    xp = backend.xp_for(model.device)
    model.eval()
    with no_grad():
        out = [model.embed(xp.asarray(ids[b]), xp.asarray(mask[b])).numpy() for b in batches(len(ids), batch_size)]
    model.train()
    return np.concatenate(out)


def project(vectors, method, seed):
    vectors = vectors.astype(np.float64)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
            return TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(vectors) - 1)).fit_transform(vectors)
        except ImportError:
            print("scikit-learn is not installed: using PCA instead of t-SNE (pip install scikit-learn)")
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def render_frame(points, labels, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, colour in ((0, "tab:red"), (1, "tab:blue")):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=9, c=colour, alpha=0.7, label=CLASS_NAMES[c])
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
    plt.close(fig)
    return image


def build(args, vocab_size):
    model = TextClassifier(vocab_size, 2, args.d_model, args.n_heads, args.d_ff, args.n_layers, max_len=args.seq_len,
                           dropout=args.dropout, norm_first=args.norm_first)
    return model.to(args.device)


def run_predict(args):
    if not args.resume:
        raise DataError("--predict needs --resume PATH (a checkpoint written by a training run)")
    model = checkpoint.load_model(args.resume, args.device)
    vocab_path = os.path.join(os.path.dirname(os.path.abspath(args.resume)), "vocab.txt")
    vocab = Vocab.load(vocab_path)
    ids, mask = encode_reviews([args.predict], vocab, model.config["max_len"])
    logits = predict_logits(model, ids, mask)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    c = int(p.argmax())
    print(f"{CLASS_NAMES[c]} (probability {p[c]:.3f})")


def train(args):
    backend.check_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    manual_seed(args.seed)
    tr_texts, tr_labels, te_texts, te_labels = load_data(args)
    vocab = Vocab.build((tokenize(t) for t in tr_texts), max_size=args.vocab_size)
    vocab.save(os.path.join(args.out, "vocab.txt"))
    tr_ids, tr_mask = encode_reviews(tr_texts, vocab, args.seq_len)
    te_ids, te_mask = encode_reviews(te_texts, vocab, args.seq_len)
    print(f"data: {len(tr_texts)} training / {len(te_texts)} test reviews, vocabulary {len(vocab)}, "
          f"sequence {args.seq_len}")
    model = build(args, len(vocab))
    optimizer = {"adam": Adam, "adamw": AdamW, "sgd": SGD}[args.optimizer]
    kwargs = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    opt = optimizer(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, **kwargs)
    if args.resume:
        checkpoint.load(args.resume, model, opt)
    print(f"model: {model.num_parameters():,} parameters, {args.n_layers} {'pre' if args.norm_first else 'post'}-norm "
          f"layers, width {args.d_model}, {args.n_heads} heads")
    xp = backend.xp_for(args.device)
    rng = np.random.default_rng(args.seed)
    plot_rows = np.random.default_rng(args.seed + 1).permutation(len(tr_ids))[:args.plot_points]
    frames, metrics = [], {"config": vars(args), "seed": args.seed, "epochs": []}
    ckpt_path = checkpoint_path(args)

    def snapshot(epoch, test_accuracy):
        if args.plot == "none":
            return
        points = project(cls_vectors(model, tr_ids[plot_rows], tr_mask[plot_rows]), args.plot, args.seed)
        title = f"[CLS] embeddings ({args.plot}), epoch {epoch}: test accuracy {test_accuracy:.1%}"
        frames.append(render_frame(points, tr_labels[plot_rows], title))

    def accuracy(ids, mask, labels):
        return float((predict_logits(model, ids, mask).argmax(1) == labels).mean())

    snapshot(0, accuracy(te_ids, te_mask, te_labels))
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        losses, correct = [], 0
        steps = batches(len(tr_ids), args.batch_size, rng)
        bar = tqdm(steps, total=math.ceil(len(tr_ids) / args.batch_size), desc=f"epoch {epoch}/{args.epochs}",
                   disable=args.no_progress, leave=False) if tqdm else steps
        for b in bar:
            opt.zero_grad()
            logits = model(xp.asarray(tr_ids[b]), xp.asarray(tr_mask[b]))
            loss = F.cross_entropy(logits, xp.asarray(tr_labels[b]))
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                kept = (f"; the last good checkpoint (epoch {epoch - 1}) is {ckpt_path}"
                        if metrics["epochs"] else "")
                raise AnomalyError(f"training diverged: loss is {value} in epoch {epoch} (try a lower --lr){kept}")
            losses.append(value)
            correct += int((logits.numpy().argmax(1) == tr_labels[b]).sum())
            if tqdm:
                bar.set_postfix(loss=f"{value:.3f}", refresh=False)
        test_accuracy = accuracy(te_ids, te_mask, te_labels)
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "train_accuracy": correct / len(tr_ids),
               "test_accuracy": test_accuracy, "seconds": time.perf_counter() - t0}
        metrics["epochs"].append(row)
        print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, train accuracy {row['train_accuracy']:.3f}, "
              f"test accuracy {test_accuracy:.3f} ({row['seconds']:.1f} s)")
        snapshot(epoch, test_accuracy)
        checkpoint.save(ckpt_path, model, opt, epoch=epoch)  # each epoch: a divergence keeps the last good one
    return model, vocab, (te_texts, te_ids, te_mask, te_labels), frames, metrics


def checkpoint_path(args):
    return args.checkpoint or os.path.join(args.out, "model.npz")


def report(args, model, vocab, test, frames, metrics):
    out = args.out
    te_texts, te_ids, te_mask, te_labels = test
    logits = predict_logits(model, te_ids, te_mask)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    predicted = probs.argmax(1)
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (te_labels, predicted), 1)
    text = ("rows: true class, columns: predicted class\n"
            f"{'':>10} {'negative':>9} {'positive':>9}\n"
            + "\n".join(f"{CLASS_NAMES[i]:>10} {confusion[i, 0]:>9} {confusion[i, 1]:>9}" for i in range(2))
            + f"\naccuracy {np.trace(confusion) / confusion.sum():.4f}\n")
    with open(os.path.join(out, "confusion.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text, end="")
    samples = [f"P(positive)={probs[i, 1]:.3f} true={CLASS_NAMES[te_labels[i]]}: {te_texts[i][:200]}"
               for i in range(min(8, len(te_texts)))]
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(samples) + "\n")
    print("\n".join(samples[:4]))
    metrics["final_test_accuracy"] = metrics["epochs"][-1]["test_accuracy"] if metrics["epochs"] else None
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
    if frames:
        frames[0].save(os.path.join(out, "cls_embeddings.gif"), save_all=True, append_images=frames[1:], duration=900,
                       loop=0)
        frames[-1].save(os.path.join(out, "cls_embeddings.png"))
    path = checkpoint_path(args)
    if not metrics["epochs"]:
        checkpoint.save(path, model)
    print(f"wrote {out}/metrics.json, cls_embeddings.gif ({len(frames)} frames), cls_embeddings.png, confusion.txt, "
          f"samples.txt and the model to {path}")


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.predict is not None:
            run_predict(args)
            return 0
        started = time.time()
        report(args, *train(args))
        print(f"done in {time.time() - started:.0f} s")
    except (TinygradNLPError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
