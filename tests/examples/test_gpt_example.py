"""examples/gpt.py: a tiny run writes every output and a GPT-2 (or, with --arch llama, a
Llama) folder that loads here and in transformers, samples from it, gives the same losses
for a seed and after a resume (1 and 2 threads), and bad input ends it with one line; the
README's GPT and Llama commands run as written."""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import load_example

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gpt = load_example("gpt")

TINY = ["--steps", "12", "--batch-size", "8", "--context", "24", "--d-model", "16", "--n-heads", "2", "--n-layers", "1",
        "--builtin-sentences", "400", "--eval-every", "6", "--sample-tokens", "10", "--no-progress", "--warmup", "2"]


def test_end_to_end_writes_every_output_and_a_folder_to_sample_from(tmp_path, capsys):
    assert gpt.main(TINY + ["--out", str(tmp_path)]) == 0
    for name in ("metrics.json", "loss.png", "samples.txt", "model/config.json", "model/model.safetensors",
                 "model/chars.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == 12 and [e["step"] for e in metrics["eval"]] == [6, 12]
    assert metrics["heldout_perplexity"] == metrics["eval"][-1]["perplexity"] > 1
    capsys.readouterr()
    assert gpt.main(["--model", str(tmp_path / "model"), "--prompt", "the ", "--sample-tokens", "8", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out.splitlines()[0]) >= 4


def test_the_saved_folder_is_a_gpt2_folder_transformers_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tinygrad_nlp.models import GPT
    assert gpt.main(TINY + ["--out", str(tmp_path)]) == 0
    theirs, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = np.arange(10)[None] % 7
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(ids)).logits.numpy()
    ours = GPT.from_pretrained(tmp_path / "model").eval()
    assert np.abs(ours(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("arch, threads", [("gpt", "1"), ("gpt", "2"), ("llama", "1")])
def test_same_seed_same_losses_and_resume_is_exact(tmp_path, arch, threads, monkeypatch):
    """A run stopped after step 8 (its checkpoint from step 7) and resumed gives the
    uninterrupted run's losses: the batches, dropout and the cosine schedule continue."""
    pytest.importorskip("threadpoolctl")
    from tinygrad_nlp import DataError
    args = (TINY if arch == "gpt" else LLAMA) + ["--threads", threads]
    assert gpt.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert gpt.main(args + ["--out", str(tmp_path / "b")]) == 0
    straight = json.loads((tmp_path / "a" / "metrics.json").read_text())["train_loss"]
    assert straight == json.loads((tmp_path / "b" / "metrics.json").read_text())["train_loss"]
    windows = gpt.windows

    def stopping(ids, args, step):
        if step == 9:
            raise DataError("stopped")
        return windows(ids, args, step)
    monkeypatch.setattr(gpt, "windows", stopping)
    ckpt = str(tmp_path / "ckpt.npz")
    assert gpt.main(args + ["--out", str(tmp_path / "c"), "--checkpoint", ckpt, "--save-every", "7"]) == 1
    monkeypatch.setattr(gpt, "windows", windows)
    assert gpt.main(args + ["--out", str(tmp_path / "c"), "--resume", ckpt]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["train_loss"] == straight


def test_byte_level_bpe_trains_on_a_text_file(tmp_path):
    pytest.importorskip("tokenizers")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("le chat est sur le tapis . la commission a voté le rapport .\n" * 300, encoding="utf-8")
    assert gpt.main(TINY + ["--corpus", str(corpus), "--tokenizer", "bpe", "--vocab-size", "300",
                            "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "model" / "vocab.json").exists() and (tmp_path / "o" / "model" / "merges.txt").exists()


def test_a_sample_longer_than_the_context_keeps_its_last_context_length_tokens(tmp_path, capsys):
    assert gpt.main(TINY + ["--out", str(tmp_path), "--steps", "2"]) == 0
    capsys.readouterr()
    prompt = "the cat " * 5  # 40 characters and 30 more: past the context of 24
    assert gpt.main(["--model", str(tmp_path / "model"), "--prompt", prompt, "--sample-tokens", "30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "".join(out[:-1]).startswith(prompt) and len("\n".join(out[:-1])) == 70


LLAMA = TINY + ["--arch", "llama", "--n-kv-heads", "1"]  # 2 query heads sharing 1 key/value head


def test_llama_writes_every_output_and_a_folder_transformers_loads(tmp_path, capsys):
    from tinygrad_nlp.models import Llama
    assert gpt.main(LLAMA + ["--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == 12 and metrics["heldout_perplexity"] > 1
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]
    ours = Llama.from_pretrained(tmp_path / "model").eval()
    assert ours.hf_config.num_key_value_heads == 1 and ours.hf_config.tie_word_embeddings
    assert ours.hf_config.attention_dropout == 0.1
    capsys.readouterr()
    assert gpt.main(["--model", str(tmp_path / "model"), "--prompt", "the ", "--sample-tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    theirs, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = np.arange(10)[None] % 7
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()


def run_script(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "gpt.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def readme_commands():
    """The ``python examples/gpt.py ...`` lines of the README's GPT and Llama sections, as
    argument lists (comments dropped)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    commands = []
    for title in ("## A GPT-2-style decoder", "## Llama"):
        section = readme[readme.index(title):].split("\n## ", 1)[0]
        for block in re.findall(r"```bash\n(.*?)```", section, re.S):
            commands += [shlex.split(line, comments=True)[2:] for line in block.splitlines()
                         if line.startswith("python examples/gpt.py")]
    return commands


def test_the_readmes_gpt_and_llama_commands_run_as_written(tmp_path):
    """Each command as the README writes it, in a fresh folder, in the README's order; the
    training ones with a few steps added (and --context 64, --sample-tokens 60 left at their
    defaults, so that sampling "alice ate" from the trained model runs past the context). The
    Hub folder is a small random Llama with a byte-level tokenizer.json, built here."""
    from tinygrad_nlp import manual_seed
    from tinygrad_nlp.data import BPETokenizer, word_class_corpus
    from tinygrad_nlp.models import Llama, LlamaConfig
    commands = readme_commands()
    assert len(commands) == 6 and sum("--model" in c for c in commands) == 3, commands
    sentences = ["la commission a voté le rapport sur la pêche .", "le parlement européen adopte la résolution ."]
    (tmp_path / "europarl.fr.txt").write_text("\n".join(sentences * 300), encoding="utf-8")
    manual_seed(0)
    hub = tmp_path / "SmolLM-135M"
    Llama(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128)).save_pretrained(hub)
    BPETokenizer.train(word_class_corpus(300), vocab_size=300).save(hub)
    short = ["--steps", "4", "--eval-every", "2", "--warmup", "1", "--builtin-sentences", "800", "--no-progress"]
    for command in commands:
        sampling = "--model" in command
        result = run_script(*command, *([] if sampling else short), cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        if sampling:
            prompt = command[command.index("--prompt") + 1]
            assert result.stdout.startswith(prompt) and len(result.stdout) > len(prompt) + 20, (command, result.stdout)
    for out in ("runs/gpt", "runs/europarl", "runs/llama"):
        assert (tmp_path / out / "model" / "model.safetensors").exists(), out


@pytest.mark.parametrize("case, fragments", [
    (["--corpus", "{d}/nope.txt"], ["nope.txt", "does not exist"]),
    (["--corpus", "{d}/short.txt"], ["too few", "--context 24"]),
    (["--prompt", "Ω"], ["character 'Ω' is not in the vocabulary"]),
    (["--arch", "llama", "--n-heads", "3", "--d-model", "18"], ["num_attention_heads 3 is not a multiple of "
                                                                 "num_key_value_heads 2"]),
    (["--model", "{d}"], ["config.json' does not exist"]),
    (["--top-p", "1.5"], ["--top-p must be in (0, 1], got 1.5"]),
    (["--top-p", "0"], ["--top-p must be in (0, 1], got 0.0"]),
])
def test_bad_input_is_one_line_and_exit_status_1(tmp_path, case, fragments):
    (tmp_path / "short.txt").write_text("a short text\n", encoding="utf-8")
    result = run_script(*TINY, *[a.format(d=tmp_path) for a in case], "--out", tmp_path / "o")
    message = result.stderr.strip()
    assert result.returncode == 1 and "Traceback" not in message and message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
