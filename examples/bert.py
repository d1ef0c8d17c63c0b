"""Run a real BERT checkpoint on this engine: fill in masked words, or fine-tune it as a
sentiment classifier on IMDB reviews.

    python examples/bert.py fill-mask --model bert-base-uncased "paris is the [MASK] of france ."
    python examples/bert.py classify --model bert-base-uncased --data imdb_small_3000.csv --epochs 2

--model is a local Hugging Face folder (config.json, model.safetensors, vocab.txt or
tokenizer.json); the README says how to get bert-base-uncased. classify fine-tunes
BertForSequenceClassification (AdamW, linear warm-up and decay) and writes, as
examples/classify.py does, metrics.json, cls_embeddings.gif (the pooled [CLS] vectors,
one frame per epoch, the loaded model first), confusion.txt and samples.txt, and the
fine-tuned model to OUT/model in Hugging Face's format, which transformers loads.
"""
import os
import time

import numpy as np

from tinygrad_nlp import backend, cli, manual_seed, report
from tinygrad_nlp.data import WordPieceTokenizer, load_reviews
from tinygrad_nlp.errors import CheckpointError
from tinygrad_nlp.models import BertForMaskedLM, BertForSequenceClassification
from tinygrad_nlp.nn import DataParallel, evaluating, predict_in_batches
from tinygrad_nlp.optim import AdamW, LRScheduler, clip_grad_norm, linear_schedule

CLASS_NAMES = ["negative", "positive"]
OPTIONS = [
    ("--model", None, "a local Hugging Face BERT folder"), ("--top-k", 5, "fill-mask: candidates shown per [MASK]"),
    ("--data", "builtin", "classify: 'builtin', an IMDB CSV or an aclImdb folder"),
    ("--train-per-class", 600, "training reviews per class"), ("--test-per-class", 100, "test reviews per class"),
    ("--epochs", 2, "fine-tuning epochs"), ("--batch-size", 16, "batch size"),
    ("--seq-len", 128, "WordPiece tokens per review incl. [CLS]/[SEP]"), ("--lr", 2e-5, "peak learning rate"),
    ("--weight-decay", 0.01, "AdamW weight decay"), ("--warmup", 0.1, "warm-up, as a fraction of all steps"),
    ("--plot", ["tsne", "pca", "none"], "pca", "2-D projection of the pooled [CLS] vectors"),
    ("--out", "runs/bert", "output folder"),
] + [row for row in cli.TRAINING_OPTIONS if row[0] != "--graph"]


def parse_args(argv=None):
    p = cli.parser(__doc__, OPTIONS)
    p.add_argument("task", choices=["fill-mask", "classify"])
    p.add_argument("text", nargs="*", help="fill-mask: sentences with [MASK] tokens")
    args = p.parse_intermixed_args(argv)
    if not args.model or not os.path.isfile(os.path.join(args.model, "config.json")):
        raise CheckpointError(f"no BERT checkpoint at {args.model!r} (config.json missing): download one first, "
                              "e.g. bert-base-uncased (see the README's BERT section)")
    return args


def fill_mask(args):
    tokenizer = WordPieceTokenizer.from_pretrained(args.model)
    model = BertForMaskedLM.from_pretrained(args.model, device=args.device).eval()
    batch = tokenizer.encode(args.text or ["paris is the [MASK] of france ."], max_len=64)
    masks = np.flatnonzero(batch["input_ids"].reshape(-1) == tokenizer.mask_id)  # flat positions
    with evaluating(model):
        logits = model.logits_at(masks, *(backend.to_device(batch[k], args.device)
                                          for k in ("input_ids", "token_type_ids", "attention_mask"))).numpy()
    width = batch["input_ids"].shape[1]
    for row, text in enumerate(args.text or ["paris is the [MASK] of france ."]):
        for position in np.flatnonzero(masks // width == row):
            scores = logits[position]
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            best = np.argsort(-probs)[: args.top_k]
            print(f"{text}\n  " + ", ".join(f"{tokenizer.id_to_token(i)} ({probs[i]:.3f})" for i in best))


def classify(args):
    manual_seed(args.seed)
    tokenizer = WordPieceTokenizer.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model, device=args.device, num_labels=2)
    train_texts, train_labels, test_texts, test_labels = load_reviews(args.data, args.train_per_class,
                                                                      args.test_per_class, args.seed)
    fields = ("input_ids", "token_type_ids", "attention_mask")
    train = [tokenizer.encode(train_texts, args.seq_len)[k] for k in fields]
    test = [tokenizer.encode(test_texts, args.seq_len)[k] for k in fields]
    steps = args.epochs * -(-len(train_labels) // args.batch_size)
    model = DataParallel(model, threads=args.threads)  # processes x threads
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = LRScheduler(optimizer, linear_schedule(int(args.warmup * steps), steps))
    print(f"model: {model.num_parameters():,} parameters; {len(train_labels)} training / {len(test_labels)} test "
          f"reviews, {steps} steps")
    frames, shuffle = [], np.random.default_rng(args.seed)
    metrics = {"config": vars(args), "threads": model.threads, "epochs": []}

    def evaluate(epoch):
        logits = predict_in_batches(model.module, model.module, *test, batch_size=args.batch_size)
        accuracy = float((logits.argmax(1) == test_labels).mean())
        if args.plot != "none":
            vectors = predict_in_batches(model.module, model.embed, *test, batch_size=args.batch_size)
            title = f"pooled [CLS] ({args.plot}), epoch {epoch}: test accuracy {accuracy:.1%}"
            frames.append(report.embedding_frame(vectors, test_labels, CLASS_NAMES, title, args.plot, args.seed))
        return accuracy, logits

    accuracy, logits = evaluate(0)
    for epoch in range(1, args.epochs + 1):
        started, losses = time.perf_counter(), []
        order = shuffle.permutation(len(train_labels))
        bar = report.progress_bar(-(-len(order) // args.batch_size), disable=args.no_progress, leave=False,
                                  desc=f"epoch {epoch}/{args.epochs}")
        for rows in np.array_split(order, range(args.batch_size, len(order), args.batch_size)):
            optimizer.zero_grad()
            loss = model.loss(*(a[rows] for a in train), train_labels[rows])
            loss.backward()
            clip_grad_norm(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        accuracy, logits = evaluate(epoch)
        metrics["epochs"].append({"epoch": epoch, "train_loss": float(np.mean(losses)), "test_accuracy": accuracy,
                                  "seconds": time.perf_counter() - started})
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, test accuracy {accuracy:.3f}")
    if model.comm.is_root:
        write_outputs(args, model.module, tokenizer, frames, metrics, test_texts, test_labels, logits)


def write_outputs(args, model, tokenizer, frames, metrics, texts, labels, logits):
    text, accuracy = report.confusion_report(labels, logits.argmax(1), CLASS_NAMES)
    samples = [f"predicted={CLASS_NAMES[logits[i].argmax()]} true={CLASS_NAMES[labels[i]]}: {texts[i][:200]}"
               for i in range(min(8, len(texts)))]
    metrics["final_test_accuracy"] = accuracy
    report.write_outputs(args.out, {"confusion.txt": text, "samples.txt": "\n".join(samples) + "\n", "metrics.json": metrics})
    if frames:
        report.save_gif(os.path.join(args.out, "cls_embeddings.gif"), frames)
    model.save_pretrained(os.path.join(args.out, "model"))
    tokenizer.save(os.path.join(args.out, "model"))
    print(text + f"wrote {args.out}/metrics.json, cls_embeddings.gif ({len(frames)} frames), confusion.txt, "
          f"samples.txt and the fine-tuned model to {args.out}/model")


def main(argv=None):
    return cli.run(lambda: (lambda args: fill_mask(args) if args.task == "fill-mask" else classify(args))(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
