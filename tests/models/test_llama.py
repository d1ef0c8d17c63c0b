"""Llama against Hugging Face transformers (random LlamaForCausalLM configurations built
offline: grouped-query attention, rope_theta other than 10000, a tied head, biases, a
head_dim of its own), its KV cache against the full recompute, generation past the
context, its float64 gradients against finite differences, and its one-line errors."""
import dataclasses
import json

import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.models.decoder_checks import (
    assert_cached_logits_equal_the_full_recompute,
    assert_generation_past_the_context_is_the_window_recomputed,
)
from tinygrad_nlp import ArgumentError, CheckpointError, ShapeError, manual_seed
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error
from tinygrad_nlp.models import Llama, LlamaConfig
from tinygrad_nlp.models.llama_hf import hf_name
from tinygrad_nlp.nn import Loss
from tinygrad_nlp.tensor import no_grad

SMALL = dict(vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=24, bos_token_id=None, eos_token_id=None)
CONFIGS = {  # each differs from SMALL (grouped-query attention, 2 key/value heads for 4 query heads) in one way
    "gqa": {},
    "rope_theta": dict(rope_theta=500000.0, num_key_value_heads=4),
    "tied": dict(tie_word_embeddings=True, num_key_value_heads=1),
    "bias": dict(attention_bias=True, mlp_bias=True, rms_norm_eps=1e-5),
    "head_dim": dict(head_dim=12, rope_theta=100.0),
}


def ours_model(dtype=np.float64, **config):
    manual_seed(0)
    return Llama(LlamaConfig(**dict(SMALL, **config))).to(dtype=dtype).eval()


def ids_of(seed=0, B=2, T=9):
    return np.random.default_rng(seed).integers(0, SMALL["vocab_size"], (B, T))


def test_the_loss_is_the_next_token_cross_entropy_of_the_logits():
    for config in (CONFIGS["gqa"], CONFIGS["tied"]):
        model = ours_model(**config)
        ids = ids_of()
        loss = model.loss(ids)
        logits = model(ids[:, :-1])
        expected = F.cross_entropy(logits.reshape(-1, SMALL["vocab_size"]), ids[:, 1:].reshape(-1))
        assert isinstance(loss, Loss) and loss.count == 2 * 8
        assert abs(loss.item() - expected.item()) <= 1e-12 * expected.item()


@pytest.mark.parametrize("name", ["gqa", "tied", "bias"])
def test_gradients_match_finite_differences_in_float64(name):
    model = ours_model(**dict(CONFIGS[name], num_hidden_layers=1, hidden_size=16, intermediate_size=12, vocab_size=17,
                              initializer_range=0.3))
    rng = np.random.default_rng(0)
    for p_name, p in model.named_parameters():  # norms and biases off 1 and 0, so that each matters
        if p_name.endswith(("bias", "norm.weight")):
            p.data[...] += 0.3 * rng.standard_normal(p.shape)
    ids = np.random.default_rng(1).integers(0, 17, (2, 5))
    fn = lambda *params: model.loss(ids)  # noqa: E731
    assert gradcheck(fn, model.parameters(), mode="random", n_directions=2)
    assert max_relative_error(fn, model.parameters(), n_directions=2) <= 1e-6


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("name", ["gqa", "head_dim"])
def test_logits_with_the_cache_equal_the_full_recompute_at_every_step(dtype, tol, name):
    model = ours_model(dtype, **CONFIGS[name])
    assert_cached_logits_equal_the_full_recompute(model, ids_of(2, B=2, T=12), tol)


def test_the_cache_holds_the_key_value_heads_only():
    model = ours_model(**CONFIGS["head_dim"])
    cache = model.new_cache(3, 10)
    assert len(cache.keys) == 2 and cache.keys[0].shape == cache.values[1].shape == (3, 2, 10, 12)
    assert cache.keys[0].dtype == np.float64
    with no_grad():
        model(ids_of(T=5)[:1].repeat(3, 0), cache)
        with pytest.raises(ShapeError, match="KVCache: 11 positions do not fit its 10"):
            model(ids_of(T=6)[:1].repeat(3, 0), cache)


@pytest.mark.parametrize("prompt_length", [5, 30])  # 30: a prompt longer than the context of 24
def test_generation_past_the_context_keeps_the_last_context_length_tokens(prompt_length):
    """The cached logits equal a full recompute over the window at every step, before and
    after the sequence passes the context (where the cache is rebuilt from the window)."""
    model = ours_model()
    prompt = ids_of(10, B=2, T=prompt_length)
    assert_generation_past_the_context_is_the_window_recomputed(model, prompt)


def test_sampling_is_seeded_and_the_options_are_gpts():
    model = ours_model()
    prompt = ids_of(3, B=2, T=4)
    greedy = model.generate(prompt, 10, temperature=0)
    assert greedy.shape == (2, 14) and np.array_equal(greedy[:, :4], prompt)
    sampled = model.generate(prompt, 10, temperature=0.9, top_k=20, top_p=0.9, seed=5)
    np.testing.assert_array_equal(model.generate(prompt, 10, temperature=0.9, top_k=20, top_p=0.9, seed=5), sampled)
    assert not np.array_equal(model.generate(prompt, 10, temperature=0.9, seed=6), sampled)
    np.testing.assert_array_equal(model.generate(prompt, 6, top_k=1, seed=1), greedy[:, :10])  # top-1 is greedy
    with pytest.raises(ArgumentError, match=r"top_p must be in \(0, 1\], got 1.5"):
        model.generate(prompt, 2, top_p=1.5)
    with pytest.raises(ArgumentError, match="top_k must be >= 1, got 0"):
        model.generate(prompt, 2, top_k=0)


def test_causal_attention_keeps_the_past_from_seeing_the_future():
    model = ours_model()
    ids = ids_of(4)
    changed = ids.copy()
    changed[:, 6:] = (changed[:, 6:] + 1) % SMALL["vocab_size"]
    np.testing.assert_allclose(model(changed).numpy()[:, :6], model(ids).numpy()[:, :6], rtol=1e-12, atol=1e-12)


def test_attention_dropout_trains_differently_and_evaluation_is_deterministic():
    manual_seed(1)
    model = Llama(LlamaConfig(**dict(SMALL, attention_dropout=0.3)))
    ids = ids_of()
    assert model.loss(ids).item() != model.loss(ids).item()
    model.eval()
    assert model.loss(ids).item() == model.loss(ids).item()


def test_too_many_positions_and_bad_ids_are_one_line_errors():
    model = ours_model()
    with pytest.raises(ShapeError, match="Llama: 25 positions exceed max_position_embeddings 24"):
        model(ids_of(T=25))
    with pytest.raises(ShapeError, match="seq_len >= 2"):
        model.loss(ids_of(T=1))
    with pytest.raises(ShapeError, match=r"ids must be \(batch, seq_len\)"):
        model(ids_of()[0])


def test_a_model_round_trips_through_a_checkpoint(tmp_path):
    from tinygrad_nlp import checkpoint
    ours = ours_model(np.float32, **CONFIGS["tied"])
    checkpoint.save(tmp_path / "llama.npz", ours)
    again = checkpoint.load_model(tmp_path / "llama.npz")
    assert isinstance(again, Llama) and again.lm_head is None
    ids = ids_of(9)
    np.testing.assert_array_equal(again.eval()(ids).numpy(), ours(ids).numpy())


@pytest.mark.parametrize("config, message", [
    (dict(num_key_value_heads=3), "num_attention_heads 4 is not a multiple of num_key_value_heads 3"),
    (dict(hidden_size=30), "hidden_size 30 is not divisible by num_attention_heads 4"),
    (dict(head_dim=7), "head_dim 7 must be even"),
    (dict(hidden_act="gelu"), "hidden_act 'gelu' is not supported"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling .* is not supported"),
    (dict(rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling .* is not supported"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}), "rope_scaling .* not supported"),
    (dict(pretraining_tp=2), "pretraining_tp 2 is not supported"),
    (dict(attention_dropout=1.0), r"attention_dropout must be in \[0, 1\), got 1.0"),
])
def test_a_configuration_this_model_cannot_be_is_a_one_line_error(config, message):
    with pytest.raises(ArgumentError, match=message) as caught:
        LlamaConfig.from_dict(dict(SMALL, **config))
    assert "\n" not in str(caught.value)


def test_rope_theta_is_read_from_either_place_and_written_to_both():
    assert LlamaConfig.from_dict(dict(SMALL, rope_theta=1234.0, rope_scaling=None)).rope_theta == 1234.0
    config = LlamaConfig.from_dict(dict(SMALL, rope_parameters={"rope_theta": 77.0, "rope_type": "default"}))
    assert config.rope_theta == 77.0 and "rope_parameters" not in config.extra
    written = config.to_dict()
    assert written["rope_theta"] == 77.0 and written["rope_parameters"] == {"rope_theta": 77.0, "rope_type": "default"}
    assert LlamaConfig.from_dict(written).to_dict() == written


# -- against transformers --------------------------------------------------------------
torch = pytest.importorskip("torch", reason="PyTorch is not installed: skipping the Llama comparisons")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: skipping Llama comparisons")
pytest.importorskip("safetensors", reason="safetensors is not installed: skipping the Llama checkpoint tests")
from transformers.models.llama import modeling_llama  # noqa: E402


def hf_model(folder, **config):
    """A random LlamaForCausalLM saved in ``folder``; its norms and biases (1 and 0 when
    built) drawn at random too, so that a misplaced one shows."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**dict(SMALL, **config), initializer_range=0.1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (0 if name.endswith("bias") else 1))
    model.eval().save_pretrained(folder)
    return model


@pytest.fixture
def float64_transformers(monkeypatch):
    """transformers computes LlamaRMSNorm and the rotary tables in float32 even in a
    float64 model (for half-precision training), about 1e-7 off; for the float64
    comparisons they run in the model's dtype, the same formulas."""
    def rms_norm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        dim = 2 * self.inv_freq.shape[0]
        theta = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        freqs = position_ids[..., None].double() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm)
    monkeypatch.setattr(modeling_llama.LlamaRotaryEmbedding, "forward", rotary)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_loaded_checkpoint_gives_transformers_logits(dtype, rtol, name, tmp_path, request):
    if dtype == np.float64:
        request.getfixturevalue("float64_transformers")
    theirs = hf_model(tmp_path, **CONFIGS[name])
    if dtype == np.float64:
        theirs = theirs.double()
    ours = Llama.from_pretrained(tmp_path, dtype=dtype).eval()
    assert (ours.lm_head is None) == (name == "tied")
    ids = ids_of(5)
    with torch.no_grad():
        expected = theirs(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours(ids).numpy() - expected).max() <= rtol * np.abs(expected).max()


@pytest.mark.parametrize("name", ["gqa", "rope_theta", "tied", "bias"])
def test_every_parameter_gradient_agrees_in_float64(name, tmp_path, float64_transformers):
    theirs = hf_model(tmp_path, **CONFIGS[name]).double()
    ours = Llama.from_pretrained(tmp_path, dtype=np.float64).eval()
    ids = ids_of(6)
    loss = ours.loss(ids)
    loss.backward()
    logits = theirs(torch.tensor(ids)).logits  # their own loss casts the logits to float32: this stays float64
    their_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, SMALL["vocab_size"]),
                                                   torch.tensor(ids[:, 1:]).reshape(-1))
    their_loss.backward()
    assert abs(loss.item() - their_loss.item()) <= 1e-12 * abs(their_loss.item())
    their_params = dict(theirs.named_parameters())
    assert len(their_params) == len(ours.parameters())
    for our_name, p in ours.named_parameters():
        expected = their_params[hf_name(our_name)[0]].grad.numpy()
        error = np.abs(p.grad - expected).max() / max(np.abs(expected).max(), 1e-30)
        assert error <= 1e-8, f"{our_name}: relative error {error:.2e}"


@pytest.mark.parametrize("name", ["gqa", "rope_theta", "tied"])
def test_greedy_generation_equals_transformers_generate(name, tmp_path):
    theirs = hf_model(tmp_path, **CONFIGS[name])
    ours = Llama.from_pretrained(tmp_path)
    prompt = ids_of(7, B=2, T=5)
    expected = theirs.generate(torch.tensor(prompt), max_new_tokens=15, do_sample=False, pad_token_id=0).numpy()
    assert expected.shape == (2, 20)
    np.testing.assert_array_equal(ours.generate(prompt, 15, temperature=0), expected)
    np.testing.assert_array_equal(ours.generate(prompt, 15, temperature=0, use_cache=False), expected)


@pytest.mark.parametrize("name", ["gqa", "tied", "bias"])
def test_saved_here_loads_in_transformers_with_no_missing_or_unexpected_keys(name, tmp_path):
    ours = ours_model(np.float32, **CONFIGS[name])
    ours.save_pretrained(tmp_path)
    theirs, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert theirs.config.tie_word_embeddings == (name == "tied")
    ids = ids_of(8)
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    again = Llama.from_pretrained(tmp_path)
    assert dataclasses.replace(again.hf_config, extra={}) == ours.hf_config
    for (our_name, a), (_, b) in zip(ours.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=our_name)


def test_a_folder_written_with_the_old_rope_theta_and_in_bfloat16_loads(tmp_path):
    """SmolLM's and TinyLlama's config.json have a top-level rope_theta and rope_scaling
    null, and their weights are bfloat16 (which NumPy lacks: widened to float32)."""
    theirs = hf_model(tmp_path, rope_theta=300.0).to(torch.bfloat16)
    theirs.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters")
    (tmp_path / "config.json").write_text(json.dumps(dict(config, rope_theta=300.0, rope_scaling=None)))
    ours = Llama.from_pretrained(tmp_path)
    assert ours.hf_config.rope_theta == 300.0 and ours.dtype == np.float32
    np.testing.assert_array_equal(ours.embed_tokens.weight.data, theirs.model.embed_tokens.weight.float().detach().numpy())
    ids = ids_of(11)
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():  # (a fresh model: .float() would keep the rotary table rounded to bfloat16)
        expected = theirs(torch.tensor(ids)).logits.numpy()
    assert np.abs(ours.eval()(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()


def test_a_folder_that_is_not_a_llama_checkpoint_is_a_one_line_error(tmp_path):
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=11)) \
        .save_pretrained(tmp_path / "gpt2")
    with pytest.raises(CheckpointError, match="is for model_type 'gpt2', not 'llama'") as caught:
        Llama.from_pretrained(tmp_path / "gpt2")
    assert "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        Llama.from_pretrained(tmp_path / "nowhere")
    from tinygrad_nlp.models import GPT, decoder_from_pretrained
    assert isinstance(decoder_from_pretrained(tmp_path / "gpt2"), GPT)
    transformers.BertModel(transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=8, vocab_size=11)).save_pretrained(tmp_path / "bert")
    with pytest.raises(CheckpointError, match="is for model_type 'bert': not a decoder this package runs "
                                              "\\(model_type 'gpt2' or 'llama'\\)"):
        decoder_from_pretrained(tmp_path / "bert")
    hf_model(tmp_path / "llama")
    (tmp_path / "llama" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="Llama.from_pretrained: no model.safetensors in"):
        Llama.from_pretrained(tmp_path / "llama")


def test_a_missing_misshapen_or_unexpected_tensor_is_named_in_one_line(tmp_path):
    from safetensors.numpy import load_file, save_file
    hf_model(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"'model.layers.1.self_attn.k_proj.weight' is missing \(needed for "
                                              r"'layers.1.self_attn.k_proj.weight' \(16, 32\)\)") as caught:
        Llama.from_pretrained(tmp_path)
    assert "\n" not in str(caught.value)
    tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((32, 32), np.float32)  # as if 4 key/value heads
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"k_proj.weight' has shape \(32, 32\), the model's .* \(16, 32\)"):
        Llama.from_pretrained(tmp_path)
    tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((16, 32), np.float32)
    tensors["model.layers.1.self_attn.q_norm.weight"] = np.zeros(8, np.float32)  # Qwen3's, not Llama's
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"unexpected entry 'model.layers.1.self_attn.q_norm.weight' \(8,\)"):
        Llama.from_pretrained(tmp_path)
    del tensors["model.layers.1.self_attn.q_norm.weight"]
    del tensors["lm_head.weight"]  # an untied model needs its head
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"'lm_head.weight' is missing"):
        Llama.from_pretrained(tmp_path)


def test_a_tied_checkpoint_that_stores_its_head_and_a_bare_llama_model_load(tmp_path):
    from safetensors.numpy import load_file, save_file
    theirs = hf_model(tmp_path, **CONFIGS["tied"])
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]  # some tied checkpoints keep the copy
    save_file(tensors, tmp_path / "model.safetensors")
    ids = ids_of(12)
    with torch.no_grad():
        expected = theirs(torch.tensor(ids)).logits.numpy()
    assert np.abs(Llama.from_pretrained(tmp_path).eval()(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    del tensors["lm_head.weight"]
    save_file({k[len("model."):]: v for k, v in tensors.items()}, tmp_path / "model.safetensors")  # a LlamaModel's
    assert np.abs(Llama.from_pretrained(tmp_path).eval()(ids).numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
