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
import argparse
import json
import os
import sys
import time

import numpy as np

import tinygrad_nlp.functional as F
from tinygrad_nlp import TinygradNLPError, backend, manual_seed, report
from tinygrad_nlp.data import WordPieceTokenizer, load_reviews
from tinygrad_nlp.errors import CheckpointError
from tinygrad_nlp.models import BertForMaskedLM, BertForSequenceClassification
from tinygrad_nlp.nn import evaluating, predict_in_batches
from tinygrad_nlp.optim import AdamW, LRScheduler, clip_grad_norm, linear_schedule

CLASS_NAMES = ["negative", "positive"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["fill-mask", "classify"])
    p.add_argument("text", nargs="*", help="fill-mask: sentences with [MASK] tokens")
    p.add_argument("--model", required=True, help="a local Hugging Face BERT folder")
    p.add_argument("--top-k", type=int, default=5, help="fill-mask: candidates shown per [MASK] (5)")
    p.add_argument("--data", default="builtin", help="classify: 'builtin', an IMDB CSV or an aclImdb folder")
    p.add_argument("--train-per-class", type=int, default=600, help="training reviews per class (600)")
    p.add_argument("--test-per-class", type=int, default=100, help="test reviews per class (100)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (2)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (16)")
    p.add_argument("--seq-len", type=int, default=128, help="WordPiece tokens per review incl. [CLS]/[SEP] (128)")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (2e-5)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (0.01)")
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up, as a fraction of all steps (0.1)")
    p.add_argument("--plot", choices=["tsne", "pca", "none"], default="pca", help="2-D projection of [CLS] vectors")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, the new head, dropout and shuffling (0)")
    p.add_argument("--out", default="runs/bert", help="output folder (runs/bert)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_intermixed_args(argv)


def check_model_folder(folder):
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise CheckpointError(f"no BERT checkpoint at {folder!r} (config.json missing): download one first, "
                              "e.g. bert-base-uncased (see the README's BERT section)")


def fill_mask(args):
    tokenizer = WordPieceTokenizer.from_pretrained(args.model)
    model = BertForMaskedLM.from_pretrained(args.model, device=args.device).eval()
    batch = tokenizer.encode(args.text or ["paris is the [MASK] of france ."], max_len=64)
    with evaluating(model):
        logits = model(*(backend.to_device(batch[k], args.device)
                         for k in ("input_ids", "token_type_ids", "attention_mask"))).numpy()
    for row, text in enumerate(args.text or ["paris is the [MASK] of france ."]):
        for position in np.flatnonzero(batch["input_ids"][row] == tokenizer.mask_id):
            scores = logits[row, position]
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            best = np.argsort(-probs)[: args.top_k]
            print(f"{text}\n  " + ", ".join(f"{tokenizer.id_to_token(i)} ({probs[i]:.3f})" for i in best))


def classify(args):
    manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    tokenizer = WordPieceTokenizer.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model, device=args.device, num_labels=2)
    train_texts, train_labels, test_texts, test_labels = load_reviews(args.data, args.train_per_class,
                                                                      args.test_per_class, args.seed)
    fields = ("input_ids", "token_type_ids", "attention_mask")
    train = [tokenizer.encode(train_texts, args.seq_len)[k] for k in fields]
    test = [tokenizer.encode(test_texts, args.seq_len)[k] for k in fields]
    steps = args.epochs * -(-len(train_labels) // args.batch_size)
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = LRScheduler(optimizer, linear_schedule(int(args.warmup * steps), steps))
    print(f"model: {model.num_parameters():,} parameters; {len(train_labels)} training / {len(test_labels)} test "
          f"reviews, {steps} steps")
    frames, metrics, shuffle = [], {"config": vars(args), "epochs": []}, np.random.default_rng(args.seed)

    def evaluate(epoch):
        logits = predict_in_batches(model, model, *test, batch_size=args.batch_size)
        accuracy = float((logits.argmax(1) == test_labels).mean())
        if args.plot != "none":
            points = report.project_2d(predict_in_batches(model, model.embed, *test, batch_size=args.batch_size),
                                       args.plot, args.seed)
            title = f"pooled [CLS] ({args.plot}), epoch {epoch}: test accuracy {accuracy:.1%}"
            frames.append(report.scatter_frame(points, test_labels, CLASS_NAMES, title))
        return accuracy, logits

    accuracy, logits = evaluate(0)
    for epoch in range(1, args.epochs + 1):
        started, losses = time.perf_counter(), []
        order = shuffle.permutation(len(train_labels))
        bar = report.progress_bar(-(-len(order) // args.batch_size), disable=args.no_progress, leave=False,
                                  desc=f"epoch {epoch}/{args.epochs}")
        for rows in np.array_split(order, range(args.batch_size, len(order), args.batch_size)):
            optimizer.zero_grad()
            logits = model(*(backend.to_device(a[rows], args.device) for a in train))
            loss = F.cross_entropy(logits, backend.to_device(train_labels[rows], args.device))
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
    write_outputs(args, model, tokenizer, frames, metrics, test_texts, test_labels, logits)


def write_outputs(args, model, tokenizer, frames, metrics, texts, labels, logits):
    text, accuracy = report.confusion_report(labels, logits.argmax(1), CLASS_NAMES)
    samples = [f"predicted={CLASS_NAMES[logits[i].argmax()]} true={CLASS_NAMES[labels[i]]}: {texts[i][:200]}"
               for i in range(min(8, len(texts)))]
    metrics["final_test_accuracy"] = accuracy
    for name, content in (("confusion.txt", text), ("samples.txt", "\n".join(samples) + "\n"),
                          ("metrics.json", json.dumps(metrics, indent=1))):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(content)
    if frames:
        report.save_gif(os.path.join(args.out, "cls_embeddings.gif"), frames)
    model.save_pretrained(os.path.join(args.out, "model"))
    tokenizer.save(os.path.join(args.out, "model"))
    print(text + f"wrote {args.out}/metrics.json, cls_embeddings.gif ({len(frames)} frames), confusion.txt, "
          f"samples.txt and the fine-tuned model to {args.out}/model")


def main(argv=None):
    try:
        args = parse_args(argv)
        check_model_folder(args.model)
        backend.check_device(args.device)
        fill_mask(args) if args.task == "fill-mask" else classify(args)
    except (TinygradNLPError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
