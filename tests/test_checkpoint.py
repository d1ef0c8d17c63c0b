import os

import numpy as np
import pytest

from tinygrad_nlp import CheckpointError, backend, checkpoint, manual_seed
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier
from tinygrad_nlp.optim import Adam

CONFIG = dict(vocab_size=20, d_model=8, n_heads=2, d_ff=16, n_layers=2, max_len=6, dropout=0.1)


def train(model, opt, steps, data_rng):
    losses = []
    for _ in range(steps):
        ids = data_rng.integers(0, 20, (4, 6))
        targets = np.where(data_rng.random((4, 6)) < 0.3, ids, -100)
        opt.zero_grad()
        loss = model.loss(ids, targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_roundtrip_restores_bit_identical_training(tmp_path):
    manual_seed(0)
    model = MaskedLanguageModel(**CONFIG)
    opt = Adam(model.parameters(), lr=1e-2)
    straight = train(model, opt, 20, np.random.default_rng(1))

    manual_seed(0)
    model = MaskedLanguageModel(**CONFIG)
    opt = Adam(model.parameters(), lr=1e-2)
    data_rng = np.random.default_rng(1)
    first = train(model, opt, 10, data_rng)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, opt, rng_state=backend.get_rng_state(), data_rng=data_rng.bit_generator.state)

    manual_seed(123)  # a different state, to be replaced by the checkpoint's
    model2 = MaskedLanguageModel(**CONFIG)
    opt2 = Adam(model2.parameters(), lr=1.0)
    extra = checkpoint.load(path, model2, opt2)
    backend.set_rng_state(extra["rng_state"])
    data_rng2 = np.random.default_rng()
    data_rng2.bit_generator.state = extra["data_rng"]
    second = train(model2, opt2, 10, data_rng2)
    assert first + second == straight


def test_load_model_rebuilds_from_config(tmp_path):
    manual_seed(0)
    model = TextClassifier(30, d_model=8, n_heads=2, d_ff=8, n_layers=1, max_len=5)
    checkpoint.save(tmp_path / "c.npz", model)
    again = checkpoint.load_model(tmp_path / "c.npz")
    ids = np.array([[1, 2, 3, 0, 0]])
    model.eval(), again.eval()
    np.testing.assert_array_equal(model(ids).numpy(), again(ids).numpy())


def test_other_architecture_is_named(tmp_path):
    manual_seed(0)
    checkpoint.save(tmp_path / "a.npz", MaskedLanguageModel(**CONFIG))
    wider = MaskedLanguageModel(**dict(CONFIG, d_ff=32))
    with pytest.raises(CheckpointError, match=r"encoder.layers.0.ff.linear1.weight.*\(32, 8\).*\(16, 8\)"):
        checkpoint.load(tmp_path / "a.npz", wider)
    with pytest.raises(CheckpointError, match="holds a MaskedLanguageModel"):
        checkpoint.load(tmp_path / "a.npz", TextClassifier(20, d_model=8, n_heads=2, d_ff=16, n_layers=2, max_len=6))


def test_truncated_and_corrupt_files_are_rejected(tmp_path):
    manual_seed(0)
    path = tmp_path / "a.npz"
    checkpoint.save(path, MaskedLanguageModel(**CONFIG))
    data = path.read_bytes()
    (tmp_path / "short.npz").write_bytes(data[:-1])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(tmp_path / "short.npz", MaskedLanguageModel(**CONFIG))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz", MaskedLanguageModel(**CONFIG))


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    manual_seed(0)
    model = MaskedLanguageModel(**CONFIG)
    path = tmp_path / "a.npz"
    checkpoint.save(path, model)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, model)
    assert path.read_bytes() == before
    assert [f for f in os.listdir(tmp_path)] == ["a.npz"]  # no temporary file left behind


KILLED_WRITER = r"""
import sys
import numpy as np
from tinygrad_nlp import checkpoint
from tinygrad_nlp.nn import Linear
model = Linear(1024, 2048)  # 8 MiB: a save takes long enough to be caught in the middle
for step in range(1, 10 ** 6):
    model.weight.data[...] = step
    checkpoint.save(sys.argv[1], model, step=step)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs POSIX signals")
def test_process_killed_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    """A writer saving in a loop is SIGKILLed while a temporary file exists (mid-save);
    the checkpoint at the path still loads, verified by its checksum, and holds one
    complete earlier save."""
    import signal
    import subprocess
    import sys
    import time

    from tinygrad_nlp.nn import Linear
    path = tmp_path / "ckpt.npz"
    caught_mid_save = 0
    for _ in range(10):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], env=env)
        try:
            deadline = time.time() + 60
            while not path.exists() and child.poll() is None and time.time() < deadline:  # one save first
                time.sleep(0.005)
            while time.time() < deadline and not any(f.startswith(".tmp-") for f in os.listdir(tmp_path)):
                time.sleep(0.0005)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        assert child.returncode == -signal.SIGKILL, f"the writer exited by itself ({child.returncode})"
        caught_mid_save += any(f.startswith(".tmp-") for f in os.listdir(tmp_path))
        model = Linear(1024, 2048)
        extra = checkpoint.load(path, model)
        assert extra["step"] >= 1 and np.all(model.weight.data == extra["step"])
        if caught_mid_save >= 2:
            break
    assert caught_mid_save >= 2, "the kill never landed during a save"


def test_an_encoder_checkpoint_of_format_1_reads_its_gelu_as_the_tanh_form_with_a_warning(tmp_path):
    """Before format 2 an encoder's activation "gelu" was the tanh form: such a checkpoint
    rebuilds the model it was trained as, and says so in one line."""
    import json

    from tinygrad_nlp import manual_seed
    from tinygrad_nlp.models import MaskedLanguageModel
    manual_seed(0)
    model = MaskedLanguageModel(30, 8, 2, 16, 1, max_len=6, dropout=0.0, activation="gelu_tanh")
    path = tmp_path / "old.npz"
    checkpoint.save(path, model)
    meta = json.loads(np.load(path)["__meta__"].item())  # its metadata rewritten as format 1 wrote it
    meta["format"], meta["config"]["activation"] = 1, "gelu"
    arrays = dict(np.load(path))
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.warns(FutureWarning, match="'gelu' meant the tanh form: read as 'gelu_tanh'"):
        again = checkpoint.load_model(path)
    assert again.config["activation"] == "gelu_tanh"
    ids = np.arange(12).reshape(2, 6) % 30
    np.testing.assert_array_equal(again(ids).numpy(), model(ids).numpy())
