"""Train a Transformer sentiment classifier on the [CLS] token and watch the [CLS]
embeddings of positive and negative reviews move apart, epoch by epoch.

    python examples/classify.py                                 # built-in corpus, about a minute
    python examples/classify.py --data imdb_small_3000.csv --tutorial
    python examples/classify.py --predict "not good at all" --resume runs/classify/model.npz

--tutorial: the tutorial's width 256, 4 post-norm layers, feed-forward 512, sequence 256,
dropout 0.4, Adam 1e-4, 20 epochs, 600+600 / 100+100 reviews. Outputs in --out: metrics.json,
cls_embeddings.gif (a frame per epoch, the untrained model first) and .png, confusion.txt,
samples.txt, the tokenizer, and the model (--checkpoint).
"""
import os
import time

import numpy as np

from tinygrad_nlp import backend, checkpoint, cli, graph, manual_seed, report
from tinygrad_nlp.data import WordPieceTokenizer, WordTokenizer, load_reviews, load_tokenizer
from tinygrad_nlp.errors import DataError
from tinygrad_nlp.models import TextClassifier
from tinygrad_nlp.nn import DataParallel, predict_in_batches
from tinygrad_nlp.optim import OPTIMIZERS, create_optimizer
from tinygrad_nlp.tutorials import CLASSIFIER_TUTORIAL

CLASS_NAMES, TOKENIZERS = ["negative", "positive"], {"words": WordTokenizer, "wordpiece": WordPieceTokenizer}
OPTIONS = [
    ("--data", "builtin", "'builtin' (reviews with negation), a text,label CSV, an aclImdb folder, or 'imdb' to download"),
    ("--cache-dir", None, "where --data imdb is downloaded (~/.cache/tinygrad_nlp)"),
    ("--tutorial", False, "the tutorial's full setting (see above)"), ("--epochs", 10, "epochs (tutorial 20)"),
    ("--train-per-class", 1000, "training reviews per class"), ("--test-per-class", 250, "test reviews per class"),
    ("--batch-size", 32, "batch size"), ("--seq-len", 48, "tokens per review incl. [CLS]/[SEP] (tutorial 256)"),
    ("--d-model", 64, "width (tutorial 256)"), ("--n-heads", 4, "attention heads"), ("--n-layers", 2, "layers"),
    ("--d-ff", 128, "feed-forward width (tutorial 512)"), ("--dropout", 0.1, "dropout (tutorial 0.4)"),
    ("--lr", 2e-3, "learning rate (tutorial 1e-4)"), ("--optimizer", sorted(OPTIMIZERS), "adamw", "optimizer"),
    ("--weight-decay", 0.01, "weight decay"), ("--norm-first", False, "pre-norm layers (default post-norm)"),
    ("--vocab-size", 20000, "largest vocabulary incl. special tokens"),
    ("--tokenizer", sorted(TOKENIZERS), "words", "the tutorial's word splitter, or BERT's WordPiece trained here"),
    ("--out", "runs/classify", "output folder"), ("--checkpoint", None, "where to save the model (OUT/model.npz)"),
    ("--resume", None, "start from this checkpoint (with --predict: the model to use)"),
    ("--plot", ["tsne", "pca", "none"], "tsne", "2-D projection of [CLS]"), ("--plot-points", 400, "reviews a frame"),
    ("--predict", None, "print the class and probability of this text and exit"),
] + cli.TRAINING_OPTIONS


def parse_args(argv=None):
    args = cli.parser(__doc__, OPTIONS).parse_args(argv)
    if args.tutorial:
        vars(args).update(CLASSIFIER_TUTORIAL)
    args.checkpoint = args.checkpoint or os.path.join(args.out, "model.npz")
    return args


def load_data(args):
    train_texts, train_labels, test_texts, test_labels = load_reviews(
        args.data, args.train_per_class, args.test_per_class, args.seed, args.cache_dir)
    tokenizer = TOKENIZERS[args.tokenizer].train(train_texts, args.vocab_size)
    train, test = (tokenizer.encode(texts, args.seq_len) for texts in (train_texts, test_texts))
    tokenizer.save(args.out)
    print(f"data: {len(train_texts)} training / {len(test_texts)} test reviews, vocabulary {len(tokenizer)}")
    return tokenizer, (train["input_ids"], train["attention_mask"] == 1, train_labels), \
        (test_texts, test["input_ids"], test["attention_mask"] == 1, test_labels)


def build_model(args, vocab_size, n_layers):
    return TextClassifier(vocab_size, 2, args.d_model, args.n_heads, args.d_ff, n_layers, max_len=args.seq_len,
                          dropout=args.dropout, norm_first=args.norm_first).to(args.device)


def predict(args):
    if not args.resume:
        raise DataError("--predict needs --resume PATH (a checkpoint written by a training run)")
    model = checkpoint.load_model(args.resume, args.device)
    batch = load_tokenizer(os.path.dirname(os.path.abspath(args.resume))).encode([args.predict], model.config["max_len"])
    p = model.probabilities(batch["input_ids"], batch["attention_mask"] == 1)[0]
    print(f"{CLASS_NAMES[p.argmax()]} (probability {p.max():.3f})")


def draw_graph(args):
    tokenizer, train, _ = load_data(args)
    model = build_model(args, len(tokenizer), n_layers=1)
    rows = [backend.to_device(a[:args.batch_size], args.device) for a in train]
    print(graph.draw_training_step(args.graph, lambda: model.loss(*rows), model.named_parameters()))


def train(args):
    manual_seed(args.seed)
    tokenizer, (ids, mask, labels), test = load_data(args)  # host arrays: the model shares them out
    model = DataParallel(build_model(args, len(tokenizer), args.n_layers), threads=args.threads)  # processes x threads
    optimizer = create_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    if args.resume:
        checkpoint.load(args.resume, model, optimizer)
    print(f"model: {model.num_parameters():,} parameters, {'pre' if args.norm_first else 'post'}-norm, {model}")
    saver, shuffle, frames, epochs = checkpoint.Checkpointer(args.checkpoint), np.random.default_rng(args.seed), [], []
    shown = np.random.default_rng(args.seed + 1).permutation(len(ids))[:args.plot_points]

    def test_accuracy_and_frame(epoch):
        accuracy = float((model.probabilities(*test[1:3]).argmax(1) == test[3]).mean())
        if args.plot != "none":
            vectors = predict_in_batches(model.module, model.embed, ids[shown], mask[shown])
            title = f"[CLS] embeddings ({args.plot}), epoch {epoch}: test accuracy {accuracy:.1%}"
            frames.append(report.embedding_frame(vectors, labels[shown], CLASS_NAMES, title, args.plot, args.seed))
        return accuracy

    test_accuracy_and_frame(0)
    saver.save(model, label="epoch 0")  # the last good model, should training diverge
    for epoch in range(1, args.epochs + 1):
        started, losses, correct = time.perf_counter(), [], 0
        order = shuffle.permutation(len(ids))
        bar = report.progress_bar(-(-len(order) // args.batch_size), disable=args.no_progress, leave=False, desc="epoch")
        for rows in np.array_split(order, range(args.batch_size, len(order), args.batch_size)):
            optimizer.zero_grad()
            loss = model.loss(ids[rows], mask[rows], labels[rows])
            loss.backward()
            optimizer.step()
            saver.check_loss(loss.item(), f"in epoch {epoch}")
            losses.append(loss.item())
            correct += loss.outputs["correct"]
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        epochs.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "train_accuracy": correct / len(ids),
                       "test_accuracy": test_accuracy_and_frame(epoch), "seconds": time.perf_counter() - started})
        print(", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in epochs[-1].items()))
        saver.save(model, optimizer, f"epoch {epoch}", epoch=epoch)  # a divergence keeps the last good epoch
    if model.comm.is_root:
        write_report(args, model.module, test, frames, dict(config=vars(args), epochs=epochs, threads=model.threads,
                     world_size=model.comm.world_size, rows_per_process=model.rows_per_process(args.batch_size)))


def write_report(args, model, test, frames, metrics):
    texts, labels, p = test[0], test[3], model.probabilities(*test[1:3])  # p: (N, 2)
    text, accuracy = report.confusion_report(labels, p.argmax(1), CLASS_NAMES)
    samples = [f"P(positive)={p[i, 1]:.3f} true={CLASS_NAMES[labels[i]]}: {texts[i][:200]}" for i in range(min(8, len(texts)))]
    print(text + "\n".join(samples[:4]))
    metrics["final_test_accuracy"] = accuracy
    report.write_outputs(args.out, {"confusion.txt": text, "samples.txt": "\n".join(samples) + "\n", "metrics.json": metrics})
    if frames:
        report.save_gif(os.path.join(args.out, "cls_embeddings.gif"), frames)
        frames[-1].save(os.path.join(args.out, "cls_embeddings.png"))
    print(f"wrote {args.out}/metrics.json, cls_embeddings.gif ({len(frames)} frames) and .png, confusion.txt, samples.txt")


def main(argv=None):
    return cli.run(lambda: (lambda args: predict(args) if args.predict is not None else
                            draw_graph(args) if args.graph else train(args))(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
