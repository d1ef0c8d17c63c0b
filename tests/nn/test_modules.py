import numpy as np
import pytest

from tests.helpers import needs_torch, torch
from tinygrad_nlp import CheckpointError, ShapeError, Tensor, manual_seed, nn
from tinygrad_nlp.gradcheck import gradcheck


def test_named_parameters_state_dict_and_load():
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, 0.1, norm_first=True)
    names = [n for n, _ in layer.named_parameters()]
    assert "self_attn.qkv.weight" in names and "ff.linear2.bias" in names and "norm2.weight" in names
    state = layer.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = nn.TransformerEncoderLayer(8, 2, 16, 0.1, norm_first=True)
    other.load_state_dict(state)
    for (_, a), (_, b) in zip(layer.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    bad = dict(state, **{"ff.linear1.weight": np.zeros((3, 8))})
    with pytest.raises(CheckpointError, match=r"'ff.linear1.weight' has shape \(16, 8\).*\(3, 8\)"):
        other.load_state_dict(bad)


def test_train_eval_zero_grad_to_and_repr():
    m = nn.FeedForward(4, 8, 0.5)
    m.eval()
    assert not m.dropout.training
    m.train()
    assert m.dropout.training
    m(Tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.to(dtype=np.float64)
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert "linear1" in repr(m) and "Linear(in_features=4, out_features=8" in repr(m)


def test_init_matches_pytorch_defaults():
    manual_seed(0)
    lin = nn.Linear(100, 50)
    assert np.abs(lin.weight.data).max() <= 0.1 and np.abs(lin.weight.data).max() > 0.09
    emb = nn.Embedding(1000, 64)
    assert abs(emb.weight.data.std() - 1) < 0.02
    mha = nn.MultiHeadAttention(16, 4)
    assert np.all(mha.qkv.bias.data == 0) and np.abs(mha.qkv.weight.data).max() <= np.sqrt(6 / 64)


def test_positional_encoding_pairs_share_a_frequency():
    table = nn.sinusoid_table(50, 16)
    pos, i = 7, 3
    freq = 10000 ** (-2 * i / 16)
    assert np.isclose(table[pos, 2 * i], np.sin(pos * freq)) and np.isclose(table[pos, 2 * i + 1], np.cos(pos * freq))
    odd = nn.sinusoid_table(4, 5)
    assert odd.shape == (4, 5)
    with pytest.raises(ShapeError, match="max_len=4"):
        nn.PositionalEncoding(5, 4)(Tensor(np.zeros((1, 6, 5), dtype=np.float32)))


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_gradients(norm_first):
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(6, 2, 10, dropout=0.0, norm_first=norm_first, activation="gelu").to(dtype=np.float64)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 6)), requires_grad=True)
    mask = np.array([[True, True, False], [True, True, True]])
    assert gradcheck(lambda x, *ps: layer(x, mask), [x] + layer.parameters(), mode="random")


def test_mha_on_rows_gives_forwards_outputs_at_the_wanted_positions():
    """``on_rows`` on the rows a ``Packing`` names: the real tokens and the wanted
    positions (a padding one a query only; a row of padding alone attends to nothing),
    or every position (the whole grid): ``forward``'s outputs at those positions."""
    manual_seed(0)
    mha = nn.MultiHeadAttention(8, 2).to(dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 5, 8))
    mask = np.arange(5)[None] < np.array([[5], [2], [0]])
    grid = mha(Tensor(x), mask).numpy().reshape(15, 8)
    for positions, whole_grid in ((np.array([0, 4, 5, 8, 10]), False), (np.arange(15), True)):
        packing = nn.Packing.reaching(positions, mask, (3, 5))
        assert packing.whole_grid is whole_grid and packing.lengths.tolist() == ([5, 5, 5] if whole_grid else [5, 3, 1])
        out = mha.on_rows(Tensor(x.reshape(15, 8)[packing.rows]), packing, packing.places(positions))
        np.testing.assert_allclose(out.numpy(), grid[positions], rtol=1e-12, atol=1e-12)


def test_mha_head_count_must_divide_width():
    with pytest.raises(ShapeError, match="d_model=10.*n_heads=4"):
        nn.MultiHeadAttention(10, 4)


@needs_torch
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_matches_torch(norm_first):
    manual_seed(1)
    d, h, ff = 8, 2, 16
    ours = nn.TransformerEncoderLayer(d, h, ff, 0.0, norm_first=norm_first).to(dtype=np.float64)
    ref = torch.nn.TransformerEncoderLayer(d, h, ff, 0.0, batch_first=True, norm_first=norm_first).double()
    sd = ours.state_dict()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.tensor(sd["self_attn.qkv.weight"]))
        ref.self_attn.in_proj_bias.copy_(torch.tensor(sd["self_attn.qkv.bias"]))
        ref.self_attn.out_proj.weight.copy_(torch.tensor(sd["self_attn.out.weight"]))
        ref.self_attn.out_proj.bias.copy_(torch.tensor(sd["self_attn.out.bias"]))
        for a, b in [("linear1", "ff.linear1"), ("linear2", "ff.linear2"), ("norm1", "norm1"), ("norm2", "norm2")]:
            getattr(ref, a).weight.copy_(torch.tensor(sd[b + ".weight"]))
            getattr(ref, a).bias.copy_(torch.tensor(sd[b + ".bias"]))
    x = np.random.default_rng(0).standard_normal((2, 5, d))
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    out = ours(Tensor(x), mask)
    ref.eval()
    tout = ref(torch.tensor(x), src_key_padding_mask=torch.tensor(~mask))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-10)
