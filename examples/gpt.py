"""Train a small GPT-style (or Llama) causal language model and sample from it as it
trains, or sample from a GPT-2 or Llama folder.

    python examples/gpt.py                                  # built-in corpus, about a minute on 2 cores
    python examples/gpt.py --corpus europarl.fr.txt --steps 2000 --tokenizer bpe --out runs/europarl
    python examples/gpt.py --model runs/gpt/model --prompt "alice ate"    # or a GPT-2 or Llama folder
    python examples/gpt.py --arch llama --out runs/llama    # RMSNorm, RoPE, grouped-query attention, SwiGLU
    mpirun -n 2 python -m mpi4py examples/gpt.py            # data-parallel: each process half of every batch

The text is one stream of ids (characters, as nanoGPT's shakespeare_char, or GPT-2's
byte-level BPE trained on it); each batch is random windows of --context + 1 ids. Outputs in
--out: metrics.json (held-out perplexity), loss.png, samples.txt, and the model as a
GPT2LMHeadModel (or LlamaForCausalLM) folder (--out/model) that transformers loads.
"""
import os

import numpy as np

from tinygrad_nlp import backend, checkpoint, cli, manual_seed, report
from tinygrad_nlp.data import BPETokenizer, CharTokenizer, folder_tokenizer, read_text
from tinygrad_nlp.data.generated import word_class_corpus
from tinygrad_nlp.errors import DataError
from tinygrad_nlp.models import GPT, GPTConfig, Llama, LlamaConfig, decoder_from_pretrained
from tinygrad_nlp.nn import DataParallel, evaluating
from tinygrad_nlp.optim import AdamW, LRScheduler, clip_grad_norm, cosine_schedule

TOKENIZERS = {"chars": CharTokenizer, "bpe": BPETokenizer}
OPTIONS = [  # and --device, --threads, --seed, --no-progress
    ("--arch", ["gpt", "llama"], "gpt", "GPT-2's decoder, or Llama's (its --dropout on the attention only)"),
    ("--corpus", "builtin", "a UTF-8 text file, or 'builtin'"), ("--builtin-sentences", 6000, "sentences in 'builtin'"),
    ("--tokenizer", sorted(TOKENIZERS), "chars", "characters, or GPT-2's byte-level BPE trained on the corpus"),
    ("--vocab-size", 2000, "BPE vocabulary size"), ("--steps", 300, "training steps"), ("--batch-size", 32, "rows"),
    ("--context", 64, "tokens the model sees"), ("--d-model", 128, "width"), ("--n-heads", 4, "attention heads"),
    ("--n-layers", 4, "decoder blocks"), ("--dropout", 0.1, "dropout"), ("--lr", 3e-3, "peak learning rate"),
    ("--weight-decay", 0.1, "AdamW weight decay"), ("--warmup", 30, "warm-up steps before the cosine decay"),
    ("--eval-every", 100, "held-out perplexity and a sample every N steps"), ("--n-kv-heads", 2, "Llama's key/value heads"),
    ("--prompt", "", "the start of every sample"), ("--sample-tokens", 60, "tokens a sample adds"),
    ("--temperature", 0.8, "sampling temperature (0: greedy)"), ("--top-k", 40, "keep the k likeliest ids"),
    ("--top-p", 1.0, "keep the fewest likeliest ids whose probability reaches p"),
    ("--model", None, "sample from this GPT-2 or Llama folder (config.json, model.safetensors, tokenizer) and exit"),
    ("--out", "runs/gpt", "output folder"), ("--checkpoint", None, "written every --save-every steps and at the end"),
    ("--save-every", 0, "0: at the end"), ("--resume", None, "continue the run saved in this checkpoint, exactly"),
] + [row for row in cli.TRAINING_OPTIONS if row[0] != "--graph"]


def parse_args(argv=None):
    args = cli.parser(__doc__, OPTIONS).parse_args(argv)
    cli.require_positive(args, "steps", "batch_size", "context", "d_model", "n_heads", "n_layers", "eval_every")
    if not 0 < args.top_p <= 1:
        raise DataError(f"--top-p must be in (0, 1], got {args.top_p}")
    return args


def load_data(args):
    text = "\n".join(word_class_corpus(args.builtin_sentences, seed=args.seed)) if args.corpus == "builtin" \
        else read_text(args.corpus)
    tokenizer = TOKENIZERS[args.tokenizer].train([text], args.vocab_size)
    ids = tokenizer.ids(text)
    split = int(0.9 * len(ids))
    if split - 1 <= args.context or len(ids) - split <= args.context:
        raise DataError(f"the corpus has {len(ids):,} tokens: too few for training and held-out windows of "
                        f"--context {args.context} + 1 (use a longer corpus or a shorter --context)")
    print(f"corpus: {len(text):,} characters, {len(ids):,} tokens of a vocabulary of {len(tokenizer)}")
    return tokenizer, ids[:split], ids[split:]


def windows(ids, args, step):
    """Batch ``step``: random windows of context + 1 ids, the same for a seed and a step."""
    starts = np.random.default_rng([args.seed, step]).integers(0, len(ids) - args.context, args.batch_size)
    return np.stack([ids[s:s + args.context + 1] for s in starts])


def build_model(args, vocab_size):
    if args.arch == "llama":  # SwiGLU's three matrices 8/3 d wide: as many parameters as GPT's MLP
        return Llama(LlamaConfig(vocab_size=vocab_size, max_position_embeddings=args.context, hidden_size=args.d_model,
                                 num_hidden_layers=args.n_layers, num_attention_heads=args.n_heads, bos_token_id=0,
                                 num_key_value_heads=args.n_kv_heads, intermediate_size=8 * args.d_model // 3,
                                 attention_dropout=args.dropout, tie_word_embeddings=True, eos_token_id=0)).to(args.device)
    return GPT(GPTConfig(vocab_size=vocab_size, n_positions=args.context, n_embd=args.d_model, n_layer=args.n_layers,
                         n_head=args.n_heads, resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout,
                         bos_token_id=0, eos_token_id=0)).to(args.device)


def sample(model, tokenizer, args, seed):
    prompt = tokenizer.ids(args.prompt) if args.prompt else np.zeros(1, dtype=np.int64)  # past --context: its end
    out = model.generate(prompt, args.sample_tokens, args.temperature, args.top_k, args.top_p, seed=seed)
    return tokenizer.decode(out[0] if args.prompt else out[0, 1:])


def perplexity(model, ids, args):
    """exp of the mean next-token loss over the held-out text's non-overlapping windows."""
    rows = np.stack([ids[s:s + args.context + 1] for s in range(0, len(ids) - args.context, args.context)][:64])
    with evaluating(model):  # (no graph)
        return float(np.exp(model.loss(backend.to_device(rows, model.device)).item()))


def sample_from_folder(args):
    model = decoder_from_pretrained(args.model, device=args.device)  # by config.json's model_type
    print(sample(model, folder_tokenizer(args.model), args, args.seed))


def train(args):
    manual_seed(args.seed)
    tokenizer, train_ids, heldout_ids = load_data(args)
    model = DataParallel(build_model(args, len(tokenizer)), threads=args.threads)  # processes x threads
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = LRScheduler(optimizer, cosine_schedule(args.warmup, args.steps, min_factor=0.1))
    saver, history = checkpoint.Checkpointer(args.checkpoint), {"train_loss": [], "eval": []}
    start = checkpoint.resume(args.resume, model, optimizer, scheduler, history) if args.resume else 0
    print(f"model: {model.num_parameters():,} parameters, {model}; untrained: {sample(model.module, tokenizer, args, 0)!r}")
    save = lambda step: checkpoint.save_step(saver, model, optimizer, scheduler, step, history)
    bar = report.progress_bar(args.steps, start, args.no_progress, unit="step")
    for step in range(start + 1, args.steps + 1):
        optimizer.zero_grad()
        loss = model.loss(windows(train_ids, args, step))
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        saver.check_loss(loss.item(), f"at step {step}")
        history["train_loss"].append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            ppl, text = perplexity(model.module, heldout_ids, args), sample(model.module, tokenizer, args, seed=step)
            history["eval"].append({"step": step, "loss": float(np.log(ppl)), "perplexity": ppl, "sample": text})
            bar.write(f"step {step}: held-out perplexity {ppl:.2f}\n    {text[:200]!r}")
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.update(1)
        if args.save_every and step % args.save_every == 0:
            save(step)
    bar.close()
    save(args.steps)
    if model.comm.is_root:
        model.module.save_pretrained(os.path.join(args.out, "model"))
        tokenizer.save(os.path.join(args.out, "model"))
        last = history["eval"][-1]
        samples = [f"step {e['step']} (perplexity {e['perplexity']:.2f}):\n{e['sample']}" for e in history["eval"]]
        metrics = dict(config=vars(args), **history, heldout_perplexity=last["perplexity"], world_size=model.comm.world_size,
                       threads=model.threads)
        report.write_outputs(args.out, {"metrics.json": metrics, "samples.txt": "\n\n".join(samples) + "\n"})
        report.plot_losses(os.path.join(args.out, "loss.png"), history["train_loss"], history["eval"], "cross-entropy")
        print(f"held-out perplexity {last['perplexity']:.2f}; wrote {args.out}/metrics.json, loss.png, samples.txt "
              f"and the model to {args.out}/model")


def main(argv=None):
    return cli.run(lambda: (lambda args: sample_from_folder(args) if args.model else train(args))(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
