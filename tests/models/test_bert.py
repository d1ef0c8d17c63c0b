"""BERT against Hugging Face transformers: checkpoints built offline (a randomly
initialised transformers BERT saved with save_pretrained), outputs, gradients, saving
back, and fine-tuning steps."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_nlp import ArgumentError, CheckpointError, MissingDependencyError, TokenIdError, manual_seed
from tinygrad_nlp.models import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from tinygrad_nlp.models.bert import hf_names
from tinygrad_nlp.optim import AdamW

torch = pytest.importorskip("torch", reason="PyTorch is not installed: skipping the BERT comparisons")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: skipping the BERT comparisons")
pytest.importorskip("safetensors", reason="safetensors is not installed: skipping the BERT checkpoint tests")

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, type_vocab_size=2)
HF_CLASSES = {BertModel: "BertModel", BertForMaskedLM: "BertForMaskedLM",
              BertForSequenceClassification: "BertForSequenceClassification"}


def hf_model(ours_class, folder, **config):
    torch.manual_seed(0)
    model = getattr(transformers, HF_CLASSES[ours_class])(transformers.BertConfig(**dict(SMALL, **config))).eval()
    model.save_pretrained(folder)
    return model


def batch(seed=0, B=3, T=7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, SMALL["vocab_size"], (B, T))
    types = rng.integers(0, 2, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return ids, types, mask


def theirs_outputs(model, ids, types, mask):
    out = model(torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask))
    if isinstance(model, transformers.BertModel):
        return [out.last_hidden_state, out.pooler_output]
    return [out.logits]


def ours_outputs(model, ids, types, mask):
    out = model(ids, types, mask)
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("ours_class", [BertModel, BertForMaskedLM, BertForSequenceClassification])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_loaded_checkpoint_gives_transformers_outputs(ours_class, dtype, rtol, tmp_path):
    theirs = hf_model(ours_class, tmp_path)
    if dtype == np.float64:
        theirs = theirs.double()
    ours = ours_class.from_pretrained(tmp_path, dtype=dtype).eval()
    inputs = batch()
    with torch.no_grad():
        expected = theirs_outputs(theirs, *inputs)
    for a, b in zip(ours_outputs(ours, *inputs), expected):
        scale = np.abs(b.numpy()).max()
        assert np.abs(a.numpy() - b.numpy()).max() <= rtol * scale


@pytest.mark.parametrize("ours_class", [BertForMaskedLM, BertForSequenceClassification])
def test_every_parameter_gradient_agrees_in_float64(ours_class, tmp_path):
    theirs = hf_model(ours_class, tmp_path, hidden_act="gelu").double()
    ours = ours_class.from_pretrained(tmp_path, dtype=np.float64).eval()
    ids, types, mask = batch(1)
    rng = np.random.default_rng(2)
    if ours_class is BertForMaskedLM:
        labels = np.where(rng.random(ids.shape) < 0.4, rng.integers(0, 99, ids.shape), -100)
        labels[0, 0] = 7
        loss = ours.loss(ids, labels, types, mask)
    else:
        labels = np.array([0, 1, 1])
        import tinygrad_nlp.functional as F
        loss = F.cross_entropy(ours(ids, types, mask), labels)
    loss.backward()
    out = theirs(torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask),
                 labels=torch.tensor(labels))
    out.loss.backward()
    assert abs(loss.item() - out.loss.item()) <= 1e-12 * abs(out.loss.item())
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        wanted = hf_names(name, ours.hf_base_prefix)
        grads = [their_params[w].grad for w in wanted if w in their_params]
        if not grads:  # the tied decoder: transformers names it by the word embeddings
            continue
        expected = np.concatenate([g.numpy() for g in grads], axis=0)
        error = np.abs(p.grad - expected).max() / max(np.abs(expected).max(), 1e-30)
        assert error <= 1e-8, f"{name}: relative error {error:.2e}"


@pytest.mark.parametrize("ours_class", [BertModel, BertForMaskedLM, BertForSequenceClassification])
def test_saved_here_loads_in_transformers_without_missing_or_unexpected_weights(ours_class, tmp_path):
    manual_seed(3)
    config = BertConfig(**SMALL)
    ours = ours_class(config, num_labels=3) if ours_class is BertForSequenceClassification else ours_class(config)
    ours.eval().save_pretrained(tmp_path)
    theirs, info = getattr(transformers, HF_CLASSES[ours_class]).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    theirs.eval()
    inputs = batch(4)
    with torch.no_grad():
        expected = theirs_outputs(theirs, *inputs)
    for a, b in zip(ours_outputs(ours, *inputs), expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    reloaded = ours_class.from_pretrained(tmp_path)
    for (name, a), b in zip(ours.state_dict().items(), reloaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_fine_tuning_steps_match_pytorch(tmp_path):
    theirs = hf_model(BertForSequenceClassification, tmp_path, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0).train()
    ours = BertForSequenceClassification.from_pretrained(tmp_path).train()
    opt = AdamW(ours.parameters(), lr=1e-3, weight_decay=0.01)
    topt = torch.optim.AdamW(theirs.parameters(), lr=1e-3, weight_decay=0.01)
    import tinygrad_nlp.functional as F
    for step in range(4):
        ids, types, mask = batch(10 + step)
        labels = np.array([step % 2, 1, 0])
        opt.zero_grad()
        loss = F.cross_entropy(ours(ids, types, mask), labels)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = theirs(torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask),
                       labels=torch.tensor(labels)).loss
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) <= 1e-4 * abs(tloss.item()), (step, loss.item(), tloss.item())


def test_head_missing_from_checkpoint_is_initialised_with_a_warning(tmp_path):
    hf_model(BertModel, tmp_path)
    with pytest.warns(UserWarning, match=r"classifier\.weight, classifier\.bias not in .* newly initialised"):
        model = BertForSequenceClassification.from_pretrained(tmp_path)
    assert model.classifier.weight.shape == (2, 32)


def test_a_config_that_does_not_fit_the_weights_names_the_first_mismatch(tmp_path):
    hf_model(BertModel, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 40
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight has shape \(37, 32\), "
                                              r"the model's 'layers\.0\.intermediate\.weight' \(40, 32\)"):
        BertModel.from_pretrained(tmp_path)


def test_missing_files_and_entries_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="config.json.* does not exist"):
        BertModel.from_pretrained(tmp_path)
    hf_model(BertModel, tmp_path)
    from safetensors.numpy import load_file, save_file
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["encoder.layer.1.attention.self.key.bias"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"'encoder\.layer\.1\.attention\.self\.key\.bias' is missing"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        BertModel.from_pretrained(tmp_path)


def test_without_safetensors_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys
    hf_model(BertModel, tmp_path)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(MissingDependencyError, match=r"needs safetensors: pip install 'tinygrad_nlp\[bert\]'"):
        BertModel.from_pretrained(tmp_path)


def test_mlm_loss_scores_only_labelled_positions():
    manual_seed(0)
    model = BertForMaskedLM(BertConfig(**SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    ids, types, mask = batch()
    labels = np.full(ids.shape, -100)
    labels[0, 2], labels[1, 4] = 5, 9
    logits = model(ids, types, mask).numpy()
    rows = logits[[0, 1], [2, 4]]
    log_probs = rows - np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1, keepdims=True)) - rows.max(1, keepdims=True)
    expected = -(log_probs[0, 5] + log_probs[1, 9]) / 2
    assert model.loss(ids, labels, types, mask).item() == pytest.approx(expected, rel=1e-5)


def test_checkpoint_module_round_trip(tmp_path):
    from tinygrad_nlp import checkpoint
    manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SMALL), num_labels=3)
    checkpoint.save(tmp_path / "c.npz", model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = checkpoint.load_model(tmp_path / "c.npz")
    assert isinstance(again, BertForSequenceClassification) and again.num_labels == 3
    ids, types, mask = batch()
    np.testing.assert_array_equal(model.eval()(ids, types, mask).numpy(), again.eval()(ids, types, mask).numpy())


def test_config_and_input_errors_are_named(tmp_path):
    from tinygrad_nlp import ArgumentError, ShapeError
    with pytest.raises(ArgumentError, match="hidden_size 30 is not divisible by num_attention_heads 4"):
        BertConfig(**dict(SMALL, hidden_size=30))
    with pytest.raises(ArgumentError, match="hidden_act 'swish' is not supported"):
        BertConfig(**dict(SMALL, hidden_act="swish"))
    with pytest.raises(ArgumentError, match="position_embedding_type 'relative_key' is not supported"):
        BertConfig.from_dict(dict(SMALL, position_embedding_type="relative_key"))
    (tmp_path / "config.json").write_text(json.dumps(dict(SMALL, model_type="roberta")))
    with pytest.raises(CheckpointError, match="model_type 'roberta', not 'bert'"):
        BertConfig.from_json_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        BertConfig.from_json_file(tmp_path / "config.json")
    with pytest.raises(ArgumentError, match="num_labels must be >= 1, got 0"):
        BertForSequenceClassification(BertConfig(**SMALL), num_labels=0)
    manual_seed(0)
    model = BertForMaskedLM(BertConfig(**SMALL))
    ids, types, mask = batch()
    with pytest.raises(ShapeError, match=r"input_ids must be \(batch, seq_len\), got shape \(7,\)"):
        model(ids[0])
    with pytest.raises(ShapeError, match="sequence length 65 exceeds max_position_embeddings 64"):
        model(np.ones((1, 65), dtype=np.int64))
    with pytest.raises(ShapeError, match=r"attention_mask \(3, 6\) does not match input_ids \(3, 7\)"):
        model(ids, types, mask[:, :6])
    with pytest.raises(ShapeError, match=r"labels \(3, 6\) do not match input_ids \(3, 7\)"):
        model.loss(ids, ids[:, :6])


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_states_at_positions_skip_the_padding_and_equal_the_full_forward(layers):
    """The pooled vector and the states at chosen positions, computed on the real tokens
    only, are forward's, with their gradients (float64, no dropout); an all-padding row's
    [CLS] and a scored padding position come out too."""
    manual_seed(3)
    model = BertModel(BertConfig(**dict(SMALL, num_hidden_layers=layers, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)), add_pooling_layer=True).to(dtype=np.float64)
    ids, types, mask = batch(B=4, T=7)
    mask[3] = 0  # a row of padding only
    positions = np.array([0, 3, 8, 13, 16, 22, 27])  # [CLS] of rows 0-3 among them, 13 and 22 are padding
    weights = np.random.default_rng(0).standard_normal((len(positions), SMALL["hidden_size"]))
    grads = []
    for states in (lambda: model(ids, types, mask)[0].reshape(-1, SMALL["hidden_size"])[positions],
                   lambda: model.states_at(positions, ids, types, mask)):
        model.zero_grad()
        out = states()
        (out * weights).sum().backward()
        grads.append((out.numpy(), [p.grad.copy() for p in model.parameters() if p.grad is not None]))
    (full, full_grads), (rows, row_grads) = grads
    np.testing.assert_allclose(rows, full, rtol=1e-12, atol=1e-12)
    assert len(full_grads) == len(row_grads)
    for a, b in zip(row_grads, full_grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.pooled(ids, types, mask).numpy(), model(ids, types, mask)[1].numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.pooled(ids, types).numpy(), model(ids, types)[1].numpy(), rtol=1e-12)


def test_pooled_needs_a_pooler():
    model = BertModel(BertConfig(**SMALL), add_pooling_layer=False)
    with pytest.raises(ArgumentError, match="BertModel.pooled: this model has no pooler"):
        model.pooled(*batch())
    with pytest.raises(TokenIdError, match=r"BertModel.states_at: position 21 at position \(1,\) is out of range "
                                           r"for a \(3, 7\) batch of 21 positions \(valid ids are 0..20\)"):
        model.states_at([0, 21], *batch())


def test_logits_at_the_mask_positions_are_forwards(tmp_path):
    theirs = hf_model(BertForMaskedLM, tmp_path).double()
    ours = BertForMaskedLM.from_pretrained(tmp_path, dtype=np.float64).eval()
    ids, types, mask = batch()
    positions = np.array([1, 4, 8, 12, 20])  # 12 and 20 are padding
    with torch.no_grad():
        expected = theirs(torch.tensor(ids), token_type_ids=torch.tensor(types),
                          attention_mask=torch.tensor(mask)).logits.reshape(-1, SMALL["vocab_size"])[positions]
    got = ours.logits_at(positions, ids, types, mask).numpy()
    np.testing.assert_allclose(got, ours(ids, types, mask).numpy().reshape(-1, SMALL["vocab_size"])[positions],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), layers=st.integers(0, 2), data=st.data())
def test_states_at_any_padding_and_positions_are_forwards_rows(B, T, layers, data):
    """Any key-padding mask (rows of padding only too) and any distinct positions."""
    manual_seed(1)
    model = BertModel(BertConfig(**dict(SMALL, num_hidden_layers=layers)), add_pooling_layer=False)
    model = model.to(dtype=np.float64).eval()
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    ids, types = rng.integers(1, SMALL["vocab_size"], (B, T)), rng.integers(0, 2, (B, T))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).reshape(B, T)
    positions = np.array(sorted(data.draw(st.sets(st.integers(0, B * T - 1), min_size=1))), dtype=np.int64)
    rows = model.states_at(positions, ids, types, mask).numpy()
    full = model(ids, types, mask)[0].numpy().reshape(B * T, -1)[positions]
    assert rows.shape == (len(positions), SMALL["hidden_size"])
    np.testing.assert_allclose(rows, full, rtol=1e-11, atol=1e-12)
