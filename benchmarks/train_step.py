"""Time one full training step (forward, loss, backward, Adam) of a tutorial's model.

    python benchmarks/train_step.py --config mlm --device cpu --torch
    python benchmarks/train_step.py --config classifier --device cpu --torch --jax --memory

mlm: batch 128, sequence 20, width 128, 8 heads, 8 pre-norm layers, feed-forward 512,
vocabulary 40,000, dropout 0.1, 15% of positions scored.
gpt: nanoGPT's character-level shape (6 layers, 6 heads, width 384, context 256, dropout
0.2) at batch 16, against transformers' GPT2LMHeadModel of the same config.
llama: SmolLM-135M's width 576, 9 heads, 3 key/value heads, feed-forward 1536, vocabulary
49,152 and tied head, with 4 of its 30 layers, at batch 4, sequence 256, against
transformers' LlamaForCausalLM of the same config (its default attention, PyTorch's SDPA).
classifier: batch 32, sequence 256, width 256, 4 heads, 4 post-norm layers, feed-forward
512, vocabulary 30,522, dropout 0.4.
With --torch the same model runs in PyTorch in the same process, alternating with ours:
eager (for mlm both as the tutorial writes it, LM head on every position, and with the
head on the scored positions only) and under torch.compile; --jax adds a JAX jit of the
whole step (benchmarks/jax_step.py). Each report gives tokens/s, the share of the
measured matmul peak, and a roofline line: the step's matmul FLOPs at that peak and its
least memory traffic at the measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
from common import (
    PEAK,
    STEP_SETTLE_SECONDS,
    flops_per_step,
    least_traffic,
    matmul_probe,
    memory_bandwidth,
    op_timers,
    roofline,
    run_cli,
    step_memory,
    time_alternating,
)

from tinygrad_nlp import backend, manual_seed
from tinygrad_nlp.models import (
    GPT,
    BertConfig,
    BertForSequenceClassification,
    GPTConfig,
    Llama,
    LlamaConfig,
    MaskedLanguageModel,
    TextClassifier,
)
from tinygrad_nlp.nn import DataParallel
from tinygrad_nlp.optim import Adam
from tinygrad_nlp.testing import TUTORIAL_SHAPES

CONFIGS = {  # the tutorials' settings (tinygrad_nlp/tutorials.py): pre-norm MLM, post-norm classifier
    "mlm": dict(TUTORIAL_SHAPES["mlm"], norm_first=True),
    "classifier": dict(TUTORIAL_SHAPES["classifier"], norm_first=False),
    # fine-tuning bert-base-uncased's shape with a 2-class head (random weights)
    "bert-base": dict(batch=8, seq=128, d=768, heads=12, ff=3072, layers=12, vocab=30522, scored=8, classes=2,
                      dropout=0.1, norm_first=False),
    # a MiniLM-shaped BERT (all-MiniLM-L6-v2's 6 layers x 384, 12 heads, ff 1536) fine-tuned the same way
    "minilm": dict(batch=8, seq=128, d=384, heads=12, ff=1536, layers=6, vocab=30522, scored=8, classes=2,
                   dropout=0.1, norm_first=False),
    # bert-base at a long context
    "bert-base-512": dict(batch=4, seq=512, d=768, heads=12, ff=3072, layers=12, vocab=30522, scored=4, classes=2,
                          dropout=0.1, norm_first=False),
    # nanoGPT's character-level Shakespeare model (6 layers, 6 heads, width 384, context 256,
    # dropout 0.2, 65 characters) at batch 16: a causal LM, every position scored
    "gpt": dict(batch=16, seq=256, d=384, heads=6, ff=1536, layers=6, vocab=65, scored=16 * 256, classes=65,
                dropout=0.2, norm_first=True),
    # SmolLM-135M's width, heads and key/value heads (HuggingFaceTB/SmolLM-135M), 4 of its 30 layers: a causal LM
    "llama": dict(batch=4, seq=256, d=576, heads=9, kv_heads=3, ff=1536, layers=4, vocab=49152, scored=4 * 256,
                  classes=49152, dropout=0.0, norm_first=True),
}
DECODERS = ("gpt", "llama")  # causal LMs: (batch, seq + 1) ids, every position scored


def gpt_config(c):
    return GPTConfig(vocab_size=c["vocab"], n_positions=c["seq"], n_embd=c["d"], n_layer=c["layers"], n_head=c["heads"],
                     resid_pdrop=c["dropout"], embd_pdrop=c["dropout"], attn_pdrop=c["dropout"])


def llama_config(c):
    return LlamaConfig(vocab_size=c["vocab"], max_position_embeddings=2048, hidden_size=c["d"], intermediate_size=c["ff"],
                       num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                       rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)


def gpt_ids(c):
    """The decoder's batch: (batch, seq + 1) ids, each position predicting the next."""
    return np.random.default_rng(0).integers(0, c["vocab"], (c["batch"], c["seq"] + 1))


def bert_config(c):
    return dict(vocab_size=c["vocab"], hidden_size=c["d"], num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                intermediate_size=c["ff"], hidden_dropout_prob=c["dropout"], attention_probs_dropout_prob=c["dropout"])


def build(c, device, name):
    """Our model of the tutorial on ``device`` and the batch its ``loss`` takes."""
    manual_seed(0)
    xp = backend.xp_for(device)
    ids, targets, mask, labels = (xp.asarray(a) for a in inputs(c))
    if name == "mlm":
        model = MaskedLanguageModel(c["vocab"], c["d"], c["heads"], c["ff"], c["layers"], c["seq"], c["dropout"])
        return model.to(device), (ids, targets)
    if name.startswith(("bert-base", "minilm")):
        model = BertForSequenceClassification(BertConfig(**bert_config(c)))
        return model.to(device), (ids, xp.zeros_like(ids), mask, labels)
    if name == "gpt":
        return GPT(gpt_config(c)).to(device), (xp.asarray(gpt_ids(c)),)
    if name == "llama":
        return Llama(llama_config(c)).to(device), (xp.asarray(gpt_ids(c)),)
    model = TextClassifier(c["vocab"], 2, c["d"], c["heads"], c["ff"], c["layers"], c["seq"], c["dropout"])
    return model.to(device), (ids, mask, labels)


def ours(c, device, name, threads=1):
    """Our step, Adam; with ``threads`` > 1 as that many replicas in threads
    (``nn.DataParallel``)."""
    model, batch = build(c, device, name)
    model = DataParallel(model, threads)
    opt = Adam(model.parameters(), lr=1e-4)
    xp = backend.xp_for(device)

    def step():
        opt.zero_grad()
        model.loss(*batch).backward()
        opt.step()
        if device == "cuda":
            xp.cuda.Device().synchronize()
    return step


def profile(c, device, name, repeats, warmup):
    """Print each op's forward and backward milliseconds per step of our step (median
    step), and what the step spends outside the ops (Adam, the graph walk, Python)."""
    step = ours(c, device, name)
    for _ in range(warmup):
        step()
    with op_timers() as totals:
        step_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            step_times.append(time.perf_counter() - start)
    per_step = {key: 1000 * seconds / repeats for key, seconds in totals.items()}
    total = 1000 * sum(step_times) / repeats
    ops = sorted({op for op, _ in per_step}, key=lambda op: -per_step.get((op, "forward"), 0)
                 - per_step.get((op, "backward"), 0))
    print(f"{name} training step on {device}, ms per step (mean of {repeats}, op timers on): {total:.1f}")
    print(f"{'op':28} {'forward':>8} {'backward':>9} {'share':>6}")
    for op in ops:
        forward, backward = per_step.get((op, "forward"), 0.0), per_step.get((op, "backward"), 0.0)
        print(f"{op:28} {forward:8.1f} {backward:9.1f} {100 * (forward + backward) / total:5.1f}%")
    outside = total - sum(per_step.values())
    print(f"{'outside the ops (Adam, walk)':28} {outside:18.1f} {100 * outside / total:5.1f}%")


def inputs(c):
    """The batch every contender trains on: ids, MLM targets (-100 where not scored), the
    classifier's key-padding mask (True on real tokens) and labels, as NumPy arrays."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, c["vocab"], (c["batch"], c["seq"]))
    targets = np.where(rng.random((c["batch"], c["seq"])) < 0.15, ids, -100)
    lengths = rng.integers(c["seq"] // 2, c["seq"] + 1, (c["batch"], 1))  # padded rows, as a fine-tuning batch has
    if c.get("no_padding"):
        lengths[:] = c["seq"]
    mask = np.arange(c["seq"])[None] < lengths
    labels = rng.integers(0, 2, c["batch"])
    return ids, targets, mask, labels


def torch_encoder_loss(torch, c, dev, name, full_head, ids, targets, mask, labels):
    """PyTorch's own encoder with the tutorial's shapes: (modules, loss function)."""
    layer = torch.nn.TransformerEncoderLayer(c["d"], c["heads"], c["ff"], c["dropout"], batch_first=True,
                                             norm_first=c["norm_first"])
    encoder = torch.nn.TransformerEncoder(layer, c["layers"], enable_nested_tensor=False)
    emb = torch.nn.Embedding(c["vocab"], c["d"])
    head = torch.nn.Linear(c["d"], c["classes"], bias=name != "mlm")
    norm = torch.nn.LayerNorm(c["d"])
    modules = torch.nn.ModuleList([emb, encoder, head, norm]).to(dev)
    pe = torch.zeros(c["seq"], c["d"], device=dev)
    scored = (targets.reshape(-1) != -100).nonzero().squeeze(1)

    def loss_of():
        x = emb(ids) + pe
        if name == "mlm":
            h = norm(encoder(x))
            if full_head:
                return torch.nn.functional.cross_entropy(head(h).reshape(-1, c["vocab"]), targets.reshape(-1))
            return torch.nn.functional.cross_entropy(head(h.reshape(-1, c["d"])[scored]), targets.reshape(-1)[scored])
        return torch.nn.functional.cross_entropy(head(encoder(x, src_key_padding_mask=~mask)[:, 0]), labels)
    return modules, loss_of


def huggingface_bert_loss(c, dev, ids, mask, labels):
    """transformers' BertForSequenceClassification with the same config."""
    import transformers
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**bert_config(c))).to(dev)
    return model, lambda: model(ids, attention_mask=mask.long(), labels=labels).loss


def huggingface_gpt2_loss(c, dev):
    """transformers' GPT2LMHeadModel with the same config: the next-token loss of every
    position of the (batch, seq + 1) ids, as ours (its own loss would score seq - 1)."""
    import torch
    import transformers
    config = gpt_config(c).to_dict()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).to(dev)
    ids = torch.tensor(gpt_ids(c), device=dev)
    return model, lambda: torch.nn.functional.cross_entropy(model(ids[:, :-1]).logits.reshape(-1, c["vocab"]),
                                                            ids[:, 1:].reshape(-1))


def huggingface_llama_loss(c, dev):
    """transformers' LlamaForCausalLM with the same config, the next-token loss of every
    position as ours."""
    import torch
    import transformers
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_config(c).to_dict())).to(dev)
    ids = torch.tensor(gpt_ids(c), device=dev)
    return model, lambda: torch.nn.functional.cross_entropy(model(ids[:, :-1]).logits.reshape(-1, c["vocab"]),
                                                            ids[:, 1:].reshape(-1))


def torch_step(c, device, name, full_head, compiled=False):
    import torch
    torch.manual_seed(0)
    dev = "cuda" if device == "cuda" else "cpu"
    ids, targets, mask, labels = (torch.tensor(a, device=dev) for a in inputs(c))
    if name == "gpt":
        modules, loss_of = huggingface_gpt2_loss(c, dev)
    elif name == "llama":
        modules, loss_of = huggingface_llama_loss(c, dev)
    elif name.startswith(("bert-base", "minilm")) and available("transformers"):
        modules, loss_of = huggingface_bert_loss(c, dev, ids, mask, labels)
    else:  # for bert-base without transformers: PyTorch's encoder with its shapes (post-norm, ReLU)
        modules, loss_of = torch_encoder_loss(torch, c, dev, name, full_head, ids, targets, mask, labels)
    opt = torch.optim.Adam(modules.parameters(), lr=1e-4)
    if compiled:  # forward and backward compiled (TorchInductor); on the GPU with CUDA graphs
        loss_of = torch.compile(loss_of, mode="reduce-overhead" if dev == "cuda" else None)

    def step():
        opt.zero_grad()
        loss_of().backward()
        opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()
    return step


def jax_step(c, device, name):
    ids, targets, mask, labels = inputs(c)
    from jax_step import make_step
    return make_step(c, name, ids, targets, mask, labels)


def available(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def contender_makers(c, device, config, with_torch, with_jax=False, threads=None):
    """{name: function building that contender's step}: ours; PyTorch eager and
    ``torch.compile`` (for the MLM with the head on the scored positions, and eager also
    as the tutorial writes it, on every position); JAX ``jit``. A peer that is not
    installed is skipped with one line."""
    makers = {"tinygrad_nlp": lambda: ours(c, device, config, 1)}
    if threads and threads > 1:
        makers[f"tinygrad_nlp, {threads} threads"] = lambda: ours(c, device, config, threads)
    if with_torch and not available("torch"):
        print("PyTorch is not installed: skipping the PyTorch contenders (pip install torch)")
    elif with_torch:
        if config == "mlm":
            makers["torch (head on all positions)"] = lambda: torch_step(c, device, config, True)
        makers["torch eager"] = lambda: torch_step(c, device, config, False)
        makers["torch.compile"] = lambda: torch_step(c, device, config, False, compiled=True)
    if with_jax and config not in ("mlm", "classifier"):
        print(f"JAX: no {config} contender (the JAX step re-creates the tutorials' models only)")
    elif with_jax and not available("jax"):
        print("JAX is not installed: skipping the JAX contender (pip install jax)")
    elif with_jax:
        makers["jax.jit"] = lambda: jax_step(c, device, config)
    return makers


def measure_memory(c, device, config, name, steps, threads=None):
    """Run one contender alone (in a fresh process) and return its step memory (MiB)
    (``common.step_memory``)."""
    step = contender_makers(c, device, config, with_torch=True, with_jax=True, threads=threads)[name]()
    return step_memory(step, device, steps, ours=name == "tinygrad_nlp", jax=name == "jax.jit")


def memory_table(args, names):
    import json
    import subprocess
    print(f"step memory (peak over {args.memory_steps} steps, each contender alone in a fresh process, "
          "minus the memory after building the model):")
    results = {}
    for name in names:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--config", args.config, "--device",
                              args.device, "--memory-of", name, "--memory-steps", str(args.memory_steps)]
                             + (["--threads", str(args.threads)] if args.threads else [])
                             + (["--no-padding"] if args.no_padding else []),
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  {name}: failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])["step_mib"]
    ref = results.get("tinygrad_nlp")
    print(f"  {'contender':34} {'step MiB':>12} {'ours/this':>9}")
    for name, mib in results.items():
        ratio = f"{ref / mib:9.2f}" if ref is not None and mib > 0 else ""
        print(f"  {name:34} {mib:8.0f} MiB {ratio}")
    if not results:
        print("  (no figures: needs Linux /proc for the CPU, or a GPU)")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="mlm", help="which tutorial's model (mlm)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="backend (cpu)")
    p.add_argument("--torch", action="store_true",
                   help="also time PyTorch eager and torch.compile in the same process")
    p.add_argument("--jax", action="store_true", help="also time a JAX jit of the whole step in the same process")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per contender after warm-up (10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (3)")
    p.add_argument("--memory", action="store_true",
                   help="also measure each contender's step memory in a fresh process (Linux /proc, or the GPU pools)")
    p.add_argument("--memory-steps", type=int, default=3, help="steps run for the memory figure (3)")
    p.add_argument("--threads", type=int, default=None,
                   help="also time our step as N replicas in N threads (nn.DataParallel)")
    p.add_argument("--no-padding", action="store_true",
                   help="every row of the classifiers' batch full length (default: lengths uniform in [seq/2, seq])")
    p.add_argument("--profile", action="store_true",
                   help="instead, time every op of our step (one thread) and print where the step's time goes")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: the child process of --memory
    args = p.parse_args(argv)
    backend.check_device(args.device)
    c = dict(CONFIGS[args.config], no_padding=args.no_padding)
    if args.profile:
        profile(c, args.device, args.config, args.repeats, args.warmup)
        return
    if args.memory_of:
        import json
        print(json.dumps({"step_mib": measure_memory(c, args.device, args.config, args.memory_of, args.memory_steps,
                                                      args.threads)}))
        return
    xp = backend.xp_for(args.device)
    probe = matmul_probe(xp, args.device)
    alone = time_alternating({PEAK: probe}, 5, 1)[PEAK]  # before any peer's thread pool exists
    contenders = {name: make() for name, make in contender_makers(c, args.device, args.config, args.torch, args.jax,
                                                                         args.threads).items()}
    contenders[PEAK] = probe
    times = time_alternating(contenders, args.repeats, args.warmup, settle=STEP_SETTLE_SECONDS)
    # the best product, alone or among the contenders (right after PyTorch's or JAX's steps
    # their idle threads still spin, and a product then runs at half speed)
    peak = 2 * 2048 ** 3 / min(times.pop(PEAK) + alone) / 1e9
    del contenders[PEAK]
    scored = int(0.15 * c["batch"] * c["seq"]) if args.config == "mlm" else c["scored"] if args.config in DECODERS \
        else c["batch"]
    flops = flops_per_step(c, scored)
    tokens = c["batch"] * c["seq"]
    print(f"{args.config} training step on {args.device}: {c}")
    print(f"matmul peak (best 2048^2 float32 product, alone and among the contenders): {peak:.1f} GFLOP/s; "
          f"step matmul work {flops / 1e9:.2f} GFLOP (head on scored positions)")
    ref = np.median(times["tinygrad_nlp"])
    print(f"{'contender':34} {'median ms':>10} {'tokens/s':>10} {'GFLOP/s':>8} {'% peak':>7} {'ours/this':>9}")
    for k, ts in times.items():
        m = np.median(ts)
        gflops = flops / m / 1e9
        print(f"{k:34} {m * 1000:10.1f} {tokens / m:10,.0f} {gflops:8.1f} {100 * gflops / peak:6.1f}% {ref / m:9.2f}")
    model, batch = build(c, args.device, args.config)
    print(roofline(flops, peak, least_traffic(model.loss(*batch), model.parameters()),
                   memory_bandwidth(xp, args.device), ref))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process (all contenders): {peak_rss:.0f} MiB")
    if args.memory:
        memory_table(args, list(contenders))


if __name__ == "__main__":
    run_cli(main)
