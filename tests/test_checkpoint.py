import os

import numpy as np
import pytest

import tinygrad_nlp.functional as F
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
