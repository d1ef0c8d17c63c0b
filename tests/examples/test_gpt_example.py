"""examples/gpt.py: a tiny run writes every output and a GPT-2 folder that loads here and
in transformers, samples from it, gives the same losses for a seed and after a resume (1
and 2 threads), and bad input ends it with one line."""
import json
import os
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


@pytest.mark.parametrize("threads", ["1", "2"])
def test_same_seed_same_losses_and_resume_is_exact(tmp_path, threads, monkeypatch):
    """A run stopped after step 8 (its checkpoint from step 7) and resumed gives the
    uninterrupted run's losses: the batches, dropout and the cosine schedule continue."""
    pytest.importorskip("threadpoolctl")
    from tinygrad_nlp import DataError
    args = TINY + ["--threads", threads]
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


def run_script(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "gpt.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case, fragments", [
    (["--corpus", "{d}/nope.txt"], ["nope.txt", "does not exist"]),
    (["--corpus", "{d}/short.txt"], ["too few", "--context 24"]),
    (["--prompt", "x" * 30], ["30 prompt + 10 new tokens exceed the context of 24 positions"]),
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
