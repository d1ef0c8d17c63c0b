"""Flat parameter buffers: parameters, gradients and optimizer moments as views into one
array per dtype and device, with the same numbers as parameter-by-parameter updates."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import ArgumentError, manual_seed
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier
from tinygrad_nlp.nn import Linear, Parameter
from tinygrad_nlp.nn.flat import flatten
from tinygrad_nlp.optim import SGD, Adam, AdamW, clip_grad_norm


def small_mlm(seed=0, dtype=np.float64):
    manual_seed(seed)
    return MaskedLanguageModel(vocab_size=30, d_model=8, n_heads=2, d_ff=16, n_layers=2, max_len=6,
                               dropout=0.0, tie_weights=True).to(dtype=dtype)


def mlm_loss(model, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 30, (3, 6))
    targets = np.where(rng.random((3, 6)) < 0.5, ids, -100)
    targets[0, 0] = ids[0, 0]
    return model.loss(ids, targets)


def test_parameters_become_views_of_one_buffer_keeping_identity_names_and_values():
    model = small_mlm()
    before = model.state_dict()
    params = model.parameters()
    (buffer,) = flatten(params)
    assert model.parameters() == params or all(a is b for a, b in zip(model.parameters(), params))
    assert buffer.size == sum(p.size for p in params)
    for p in params:
        assert p.flat is buffer and np.shares_memory(p.data, buffer.data)
    after = model.state_dict()
    assert list(after) == list(before)
    for name in before:
        assert after[name].shape == before[name].shape
        np.testing.assert_array_equal(after[name], before[name])


def test_tied_weight_stays_one_parameter_with_one_slot():
    model = small_mlm()
    assert model.head.weight is model.embedding.weight
    (buffer,) = flatten(model.parameters())
    assert sum(p is model.embedding.weight for p in buffer.params) == 1
    assert model.head.weight is model.embedding.weight and model.head.weight.flat is buffer
    assert len(buffer.params) == len({id(p) for p in model.parameters()})


def test_one_buffer_per_dtype():
    a = Parameter(np.zeros(3, np.float32))
    b = Parameter(np.zeros(4, np.float64))
    c = Parameter(np.ones((2, 2), np.float32))
    buffers = flatten([a, b, c])
    assert [len(x.params) for x in buffers] == [2, 1]
    assert buffers[0].data.dtype == np.float32 and buffers[0].size == 7
    with pytest.raises(ArgumentError, match="no parameters"):
        flatten([])


def test_gradients_land_in_the_flat_buffer_and_accumulate():
    model = small_mlm()
    (buffer,) = flatten(model.parameters())
    mlm_loss(model).backward()
    first = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert buffer.has_all_gradients()
    for p in model.parameters():
        assert p.grad is p.grad_slot
    mlm_loss(model).backward()  # a second backward adds, never overwrites
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[n], rtol=1e-12, atol=1e-15)
    model.zero_grad()
    assert not buffer.has_all_gradients()
    mlm_loss(model).backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, first[n], rtol=1e-12, atol=1e-15)


def unflattened_step(optimizer_class, kwargs, steps=3, skip=None):
    """Final parameters after ``steps`` of the optimizer: once on the flat path and once
    with one parameter's gradient taken out of its slot every step (which sends the whole
    buffer down the parameter-by-parameter path)."""
    results = []
    for force_per_parameter in (False, True):
        model = small_mlm()
        opt = optimizer_class(model.parameters(), **kwargs)
        for step in range(steps):
            opt.zero_grad()
            mlm_loss(model, seed=step).backward()
            if force_per_parameter:
                p = model.parameters()[0]
                p.grad = p.grad.copy()
            opt.step()
        results.append(model.state_dict())
    return results


@pytest.mark.parametrize("optimizer_class, kwargs", [
    (SGD, dict(lr=0.1)), (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (Adam, dict(lr=0.01)), (Adam, dict(lr=0.01, weight_decay=0.1)), (AdamW, dict(lr=0.01)),
])
def test_flat_step_equals_per_parameter_step(optimizer_class, kwargs):
    flat, per_parameter = unflattened_step(optimizer_class, kwargs)
    for name in flat:
        np.testing.assert_allclose(flat[name], per_parameter[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_optimizer_state_is_per_parameter_views_of_flat_moments_and_round_trips():
    model = small_mlm()
    opt = Adam(model.parameters(), lr=0.01)
    mlm_loss(model).backward()
    opt.step()
    (state,) = opt.flat_state
    moments = state.arrays["exp_avg"]
    for p, entries in zip(opt.params, opt.state):
        assert np.shares_memory(entries["exp_avg"], moments) and entries["exp_avg"].shape == p.shape
    saved = opt.state_dict()
    reference = small_mlm()
    reference.load_state_dict(model.state_dict())
    twin = Adam(reference.parameters(), lr=0.01)
    twin.load_state_dict(saved)
    (loaded,) = twin.flat_state  # loaded into the flat arrays: still one copy
    for entries in twin.state:
        assert all(np.shares_memory(entries[name], loaded.arrays[name]) for name in ("exp_avg", "exp_avg_sq"))
    for m, o in ((model, opt), (reference, twin)):
        o.zero_grad()
        mlm_loss(m, seed=5).backward()
        o.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_unused_parameter_keeps_pytorch_semantics():
    """A parameter without a gradient is not updated (no decay, no moments), as in PyTorch."""
    used, unused = Parameter(np.ones(3)), Parameter(np.full(2, 5.0))
    opt = AdamW([used, unused], lr=0.1, weight_decay=0.5)
    (used * used).sum().backward()
    opt.step()
    np.testing.assert_array_equal(unused.data, np.full(2, 5.0))
    assert "exp_avg" not in opt.state[1] and "exp_avg" in opt.state[0]


def test_clip_grad_norm_over_the_flat_buffer():
    model = small_mlm()
    flatten(model.parameters())
    mlm_loss(model).backward()
    grads = [p.grad.copy() for p in model.parameters()]
    expected = np.sqrt(sum((g ** 2).sum() for g in grads))
    norm = clip_grad_norm(model.parameters(), expected / 2)
    assert norm == pytest.approx(expected, rel=1e-12)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad, g * (expected / 2) / (expected + 1e-6), rtol=1e-12)


def test_moving_the_model_after_building_the_optimizer_falls_back_to_per_parameter_updates():
    manual_seed(0)
    layer = Linear(3, 2)
    opt = SGD(layer.parameters(), lr=0.5)
    layer.to(dtype=np.float64)  # new arrays: the buffer no longer holds the parameters
    assert not opt.buffers[0].holds_parameters()
    before = layer.weight.data.copy()
    F.linear(np.ones((1, 3)), layer.weight, layer.bias).sum().backward()
    opt.step()
    np.testing.assert_allclose(layer.weight.data, before - 0.5)


def test_classifier_checkpoint_layout_unchanged():
    manual_seed(0)
    model = TextClassifier(50, 2, 8, 2, 16, 1, 10, 0.0)
    names = {n: p.shape for n, p in model.named_parameters()}
    Adam(model.parameters())
    assert {n: v.shape for n, v in model.state_dict().items()} == names


def test_a_deep_copy_of_a_flattened_model_has_parameters_of_its_own_outside_the_buffer():
    import copy
    model = small_mlm()
    Adam(model.parameters(), lr=0.01)
    twin = copy.deepcopy(model)
    assert twin.head.weight is twin.embedding.weight  # tied stays tied
    assert all(p.flat is None and not np.shares_memory(p.data, q.data)
               for p, q in zip(twin.parameters(), model.parameters()))
    mlm_loss(twin).backward()
    assert all(p.grad is None for p in model.parameters())
    twin.to(dtype=np.float32)
    (buffer,) = flatten(twin.parameters())
    assert buffer.data.dtype == np.float32


def test_an_optimizer_follows_parameters_moved_after_it_was_made_with_its_state():
    """Adam steps, the model becomes float64, the steps go on: the same numbers as a new
    float64 model and optimizer that load the first one's state, and the flat path again."""
    def adam_steps(model, opt, seeds):
        for seed in seeds:
            opt.zero_grad()
            mlm_loss(model, seed=seed).backward()
            opt.step()
    model = small_mlm(dtype=np.float32)
    opt = Adam(model.parameters(), lr=0.01)
    adam_steps(model, opt, [0])
    reference = small_mlm(dtype=np.float64)
    reference.load_state_dict(model.state_dict())
    reference_opt = Adam(reference.parameters(), lr=0.01)
    reference_opt.load_state_dict(opt.state_dict())
    model.to(dtype=np.float64)
    adam_steps(model, opt, [1, 2])
    adam_steps(reference, reference_opt, [1, 2])
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    (buffer,) = opt.buffers
    assert buffer.data.dtype == np.float64 and buffer.has_all_gradients()
    assert opt.state[0]["exp_avg"].dtype == np.float64
