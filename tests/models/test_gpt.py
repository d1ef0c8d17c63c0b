"""The GPT-2-style decoder against Hugging Face transformers (random GPT2LMHeadModel
configurations built offline), its KV cache against the full recompute, its sampling,
and its float64 gradients against finite differences."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.models.decoder_checks import (
    assert_cached_logits_equal_the_full_recompute,
    assert_generation_past_the_context_is_the_window_recomputed,
)
from tinygrad_nlp import ArgumentError, CheckpointError, ShapeError, manual_seed
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error
from tinygrad_nlp.models import GPT, GPTConfig
from tinygrad_nlp.models.gpt_hf import hf_name
from tinygrad_nlp.nn import Loss
from tinygrad_nlp.tensor import no_grad

SMALL = dict(vocab_size=61, n_positions=24, n_embd=24, n_layer=2, n_head=3, resid_pdrop=0.0, embd_pdrop=0.0,
             attn_pdrop=0.0)


def ours_model(dtype=np.float64, **config):
    manual_seed(0)
    return GPT(GPTConfig(**dict(SMALL, **config))).to(dtype=dtype).eval()


def ids_of(seed=0, B=2, T=9):
    return np.random.default_rng(seed).integers(0, SMALL["vocab_size"], (B, T))


def test_the_loss_is_the_next_token_cross_entropy_of_the_logits():
    model = ours_model()
    ids = ids_of()
    loss = model.loss(ids)
    logits = model(ids[:, :-1])
    expected = F.cross_entropy(logits.reshape(-1, SMALL["vocab_size"]), ids[:, 1:].reshape(-1))
    assert isinstance(loss, Loss) and loss.count == 2 * 8
    assert abs(loss.item() - expected.item()) <= 1e-12 * expected.item()


def test_gradients_match_finite_differences_in_float64():
    model = ours_model(n_layer=1, n_embd=12, n_head=2, vocab_size=17)
    ids = np.random.default_rng(1).integers(0, 17, (2, 5))
    fn = lambda *params: model.loss(ids)  # noqa: E731
    assert gradcheck(fn, model.parameters(), mode="random", n_directions=2)
    assert max_relative_error(fn, model.parameters(), n_directions=2) <= 1e-6


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_logits_with_the_cache_equal_the_full_recompute_at_every_step(dtype, tol):
    model = ours_model(dtype)
    assert_cached_logits_equal_the_full_recompute(model, ids_of(2, B=2, T=12), tol)


def test_greedy_generation_is_the_same_with_and_without_the_cache_and_sampling_is_seeded():
    model = ours_model()
    prompt = ids_of(3, B=2, T=4)
    greedy = model.generate(prompt, 10, temperature=0)
    assert greedy.shape == (2, 14) and np.array_equal(greedy[:, :4], prompt)
    np.testing.assert_array_equal(model.generate(prompt, 10, temperature=0, use_cache=False), greedy)
    sampled = model.generate(prompt, 10, temperature=0.9, top_k=20, top_p=0.9, seed=5)
    np.testing.assert_array_equal(model.generate(prompt, 10, temperature=0.9, top_k=20, top_p=0.9, seed=5), sampled)
    assert not np.array_equal(model.generate(prompt, 10, temperature=0.9, seed=6), sampled)
    assert set(model.generate(prompt, 6, top_k=1, seed=1)[0, 4:]) == set(greedy[0, 4:10])  # top-1 is greedy


@pytest.mark.parametrize("prompt_length", [5, 30])  # 30: a prompt longer than the context of 24
def test_generation_past_the_context_keeps_the_last_context_length_tokens(prompt_length):
    """The cached logits equal a full recompute over the window at every step, before and
    after the sequence passes the context (where the cache is rebuilt from the window)."""
    model = ours_model()
    prompt = ids_of(10, B=2, T=prompt_length)
    assert_generation_past_the_context_is_the_window_recomputed(model, prompt)


def test_top_p_keeps_the_fewest_likeliest_ids_that_reach_it():
    from tinygrad_nlp.models.generation import next_tokens
    scores = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = {int(next_tokens(scores, 1.0, None, 0.7, np.random.default_rng(s))[0]) for s in range(200)}
    assert draws == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3


def test_bad_generation_arguments_are_one_line_errors():
    model = ours_model()
    with pytest.raises(ArgumentError, match=r"top_p must be in \(0, 1\], got 1.5"):
        model.generate(ids_of(), 2, top_p=1.5)
    with pytest.raises(ArgumentError, match="temperature must be >= 0"):
        model.generate(ids_of(), 2, temperature=-1)
    with pytest.raises(ShapeError, match=r"ids must be \(batch, seq_len >= 1\), got shape \(1, 0\)"):
        model.generate(np.zeros(0, dtype=np.int64), 2)
    with pytest.raises(ShapeError, match="seq_len >= 2"):
        model.loss(ids_of(T=1))


def test_causal_attention_keeps_the_past_from_seeing_the_future():
    model = ours_model()
    ids = ids_of(4)
    changed = ids.copy()
    changed[:, 6:] = (changed[:, 6:] + 1) % SMALL["vocab_size"]
    np.testing.assert_allclose(model(changed).numpy()[:, :6], model(ids).numpy()[:, :6], rtol=1e-12, atol=1e-12)


def test_dropout_trains_differently_and_evaluation_is_deterministic():
    manual_seed(1)
    model = GPT(GPTConfig(**dict(SMALL, resid_pdrop=0.2, embd_pdrop=0.2, attn_pdrop=0.2)))
    ids = ids_of()
    assert model.loss(ids).item() != model.loss(ids).item()
    model.eval()
    assert model.loss(ids).item() == model.loss(ids).item()


# -- against transformers --------------------------------------------------------------
torch = pytest.importorskip("torch", reason="PyTorch is not installed: skipping the GPT-2 comparisons")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: skipping GPT-2 comparisons")
pytest.importorskip("safetensors", reason="safetensors is not installed: skipping the GPT-2 checkpoint tests")


def hf_model(folder, **config):
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**dict(SMALL, **config))).eval()
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("config", [{}, dict(n_inner=40, activation_function="gelu", layer_norm_epsilon=1e-6)])
def test_a_loaded_checkpoint_gives_transformers_logits(dtype, rtol, config, tmp_path):
    theirs = hf_model(tmp_path, **config)
    if dtype == np.float64:
        theirs = theirs.double()
    ours = GPT.from_pretrained(tmp_path, dtype=dtype).eval()
    ids = ids_of(5)
    with torch.no_grad():
        expected = theirs(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours(ids).numpy() - expected).max() <= rtol * np.abs(expected).max()


def test_every_parameter_gradient_agrees_in_float64(tmp_path):
    theirs = hf_model(tmp_path).double()
    ours = GPT.from_pretrained(tmp_path, dtype=np.float64).eval()
    ids = ids_of(6)
    loss = ours.loss(ids)
    loss.backward()
    logits = theirs(torch.tensor(ids)).logits  # their own loss casts the logits to float32: this stays float64
    their_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, SMALL["vocab_size"]),
                                                   torch.tensor(ids[:, 1:]).reshape(-1))
    their_loss.backward()
    assert abs(loss.item() - their_loss.item()) <= 1e-12 * abs(their_loss.item())
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        theirs_name, transposed = hf_name(name)
        expected = their_params[theirs_name].grad.numpy()
        expected = expected.T if transposed else expected
        error = np.abs(p.grad - expected).max() / max(np.abs(expected).max(), 1e-30)
        assert error <= 1e-8, f"{name}: relative error {error:.2e}"


def test_greedy_generation_equals_transformers_generate(tmp_path):
    theirs = hf_model(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    prompt = ids_of(7, B=1, T=5)
    expected = theirs.generate(torch.tensor(prompt), max_new_tokens=12, do_sample=False, pad_token_id=0).numpy()
    np.testing.assert_array_equal(ours.generate(prompt, 12, temperature=0), expected)


def test_saved_here_loads_in_transformers_with_no_missing_or_unexpected_keys(tmp_path):
    ours = ours_model(np.float32)
    ours.save_pretrained(tmp_path)
    theirs, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = ids_of(8)
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    again = GPT.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(ours.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_a_missing_or_misshapen_tensor_is_named_in_one_line(tmp_path):
    from safetensors.numpy import load_file, save_file
    hf_model(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'transformer.h.1.mlp.c_fc.bias' is missing") as caught:
        GPT.from_pretrained(tmp_path)
    assert "\n" not in str(caught.value)
    tensors["transformer.h.1.mlp.c_fc.bias"] = np.zeros(7, np.float32)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"c_fc.bias' has shape \(7,\)"):
        GPT.from_pretrained(tmp_path)
    tensors["transformer.h.1.mlp.c_fc.bias"] = np.zeros(96, np.float32)
    tensors["transformer.extra.weight"] = np.zeros(3, np.float32)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected entry 'transformer.extra.weight'"):
        GPT.from_pretrained(tmp_path)


def test_a_trained_model_round_trips_through_a_checkpoint(tmp_path):
    from tinygrad_nlp import checkpoint
    ours = ours_model(np.float32)
    checkpoint.save(tmp_path / "gpt.npz", ours)
    again = checkpoint.load_model(tmp_path / "gpt.npz")
    ids = ids_of(9)
    np.testing.assert_array_equal(again.eval()(ids).numpy(), ours(ids).numpy())


@pytest.mark.parametrize("config, message", [
    (dict(n_embd=25, n_head=3), "n_embd 25 is not divisible by n_head 3"),
    (dict(activation_function="swish"), "activation_function 'swish' is not supported"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=true is not supported"),
    (dict(tie_word_embeddings=False), "only GPT-2's scaled attention and tied LM head"),
])
def test_a_configuration_this_model_cannot_be_is_a_one_line_error(config, message):
    with pytest.raises(ArgumentError, match=message):
        GPTConfig.from_dict(dict(SMALL, **config))


def test_the_cache_refuses_more_positions_than_it_holds():
    model = ours_model()
    with no_grad():
        cache = model.new_cache(2, 6)
        model(ids_of(T=5), cache)
        with pytest.raises(ShapeError, match="KVCache: 7 positions do not fit its 6"):
            model(ids_of(T=2), cache)
