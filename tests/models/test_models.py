import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import needs_torch, torch
from tinygrad_nlp import ShapeError, manual_seed
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier
from tinygrad_nlp.optim import Adam

SMALL = dict(d_model=8, n_heads=2, d_ff=12, n_layers=2)


def mlm(dropout=0.0, **kw):
    manual_seed(0)
    return MaskedLanguageModel(17, max_len=6, dropout=dropout, **{**SMALL, **kw}).to(dtype=np.float64)


def classifier(dropout=0.0, **kw):
    manual_seed(0)
    return TextClassifier(17, num_classes=3, max_len=6, dropout=dropout, **{**SMALL, **kw}).to(dtype=np.float64)


def batch(rng, B=3, T=6, V=17):
    ids = rng.integers(0, V, (B, T))
    targets = np.where(rng.random((B, T)) < 0.4, ids, -100)
    targets[0, 0] = ids[0, 0]
    return ids, targets


@pytest.mark.parametrize("tie", [False, True])
def test_mlm_loss_gradients(tie, rng):
    model = mlm(tie_weights=tie)
    ids, targets = batch(rng)
    fn = lambda *params: model.loss(ids, targets)  # noqa: E731
    assert gradcheck(fn, model.parameters(), mode="random", n_directions=2)
    assert max_relative_error(fn, model.parameters(), n_directions=2) <= 1e-6


def test_mlm_loss_equals_full_cross_entropy(rng):
    model = mlm()
    ids, targets = batch(rng)
    loss = model.loss(ids, targets)
    full = F.cross_entropy(model(ids).reshape(-1, 17), targets.reshape(-1))
    assert abs(loss.item() - full.item()) < 1e-10
    loss.backward()
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    full.backward()
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-9, atol=1e-12)


def test_classifier_gradients_with_padding(rng):
    model = classifier()
    ids, _ = batch(rng)
    mask = np.array([[True] * 6, [True, True, True, False, False, False], [True, False, False, False, False, False]])
    labels = np.array([0, 2, 1])
    fn = lambda *params: F.cross_entropy(model(ids, mask), labels)  # noqa: E731
    assert gradcheck(fn, model.parameters(), mode="random", n_directions=2)
    assert max_relative_error(fn, model.parameters(), n_directions=2) <= 1e-6


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_tokens_do_not_change_cls_logits(norm_first, rng):
    model = classifier(n_heads=4, norm_first=norm_first)
    ids, _ = batch(rng, B=4)
    mask = np.ones((4, 6), dtype=bool)
    mask[1, 3:] = False
    mask[2, 1:] = False
    mask[3, 5:] = False
    before = model(ids, mask).numpy()
    changed = ids.copy()
    changed[~mask] = (changed[~mask] + 5) % 17
    np.testing.assert_allclose(model(changed, mask).numpy(), before, atol=1e-12)
    assert model.embed(ids, mask).shape == (4, 8)


def test_shape_errors(rng):
    with pytest.raises(ShapeError, match="seq_len|max_len"):
        mlm()(rng.integers(0, 17, (2, 9)))
    with pytest.raises(ShapeError, match=r"mask \(2, 5\) does not match ids \(2, 6\)"):
        classifier()(rng.integers(0, 17, (2, 6)), np.ones((2, 5), dtype=bool))


@pytest.mark.parametrize("make", [mlm, classifier])
def test_overfits_a_tiny_batch(make, rng):
    model = make()
    model.to(dtype=np.float32)
    ids, targets = batch(rng, B=4)
    labels = np.array([0, 1, 2, 1])
    opt = Adam(model.parameters(), lr=1e-2)
    loss_fn = (lambda: model.loss(ids, targets)) if make is mlm else (lambda: F.cross_entropy(model(ids), labels))
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.1 * first


@needs_torch
def test_mlm_forward_backward_matches_torch(rng):
    """The MLM's loss and every gradient against the same network written in PyTorch."""
    model = mlm()
    sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    ids, targets = batch(rng)
    loss = model.loss(ids, targets)
    loss.backward()

    x = torch.nn.functional.embedding(torch.tensor(ids), sd["embedding.weight"])
    x = x + torch.tensor(model.positions._buffers["table"][:6], dtype=torch.float64)
    for i in range(2):
        p = f"encoder.layers.{i}."
        h = torch.nn.functional.layer_norm(x, (8,), sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        qkv = torch.nn.functional.linear(h, sd[p + "self_attn.qkv.weight"], sd[p + "self_attn.qkv.bias"])
        q, k, v = qkv.reshape(3, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).reshape(3, 6, 8)
        x = x + torch.nn.functional.linear(a, sd[p + "self_attn.out.weight"], sd[p + "self_attn.out.bias"])
        h = torch.nn.functional.layer_norm(x, (8,), sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        h = torch.relu(torch.nn.functional.linear(h, sd[p + "ff.linear1.weight"], sd[p + "ff.linear1.bias"]))
        x = x + torch.nn.functional.linear(h, sd[p + "ff.linear2.weight"], sd[p + "ff.linear2.bias"])
    x = torch.nn.functional.layer_norm(x, (8,), sd["norm.weight"], sd["norm.bias"])
    logits = torch.nn.functional.linear(x, sd["head.weight"])
    tloss = torch.nn.functional.cross_entropy(logits.reshape(-1, 17), torch.tensor(targets.reshape(-1)))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-10
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, sd[name].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)


@needs_torch
def test_classifier_forward_backward_matches_torch(rng):
    """The post-norm classifier against torch.nn.TransformerEncoder with the same weights."""
    model = classifier()
    sd = model.state_dict()
    layer = torch.nn.TransformerEncoderLayer(8, 2, 12, 0.0, batch_first=True, norm_first=False)
    ref = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).double()
    head = torch.nn.Linear(8, 3).double()
    emb = torch.nn.Embedding(17, 8).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(sd["embedding.weight"]))
        head.weight.copy_(torch.tensor(sd["classifier.weight"]))
        head.bias.copy_(torch.tensor(sd["classifier.bias"]))
        for i, tl in enumerate(ref.layers):
            p = f"encoder.layers.{i}."
            tl.self_attn.in_proj_weight.copy_(torch.tensor(sd[p + "self_attn.qkv.weight"]))
            tl.self_attn.in_proj_bias.copy_(torch.tensor(sd[p + "self_attn.qkv.bias"]))
            tl.self_attn.out_proj.weight.copy_(torch.tensor(sd[p + "self_attn.out.weight"]))
            tl.self_attn.out_proj.bias.copy_(torch.tensor(sd[p + "self_attn.out.bias"]))
            for a, b in [("linear1", "ff.linear1"), ("linear2", "ff.linear2"), ("norm1", "norm1"), ("norm2", "norm2")]:
                getattr(tl, a).weight.copy_(torch.tensor(sd[p + b + ".weight"]))
                getattr(tl, a).bias.copy_(torch.tensor(sd[p + b + ".bias"]))
    ids, _ = batch(rng)
    mask = np.ones((3, 6), dtype=bool)
    mask[1, 4:] = False
    labels = np.array([0, 2, 1])
    loss = F.cross_entropy(model(ids, mask), labels)
    loss.backward()
    x = emb(torch.tensor(ids)) + torch.tensor(model.positions._buffers["table"][:6], dtype=torch.float64)
    h = ref(x, src_key_padding_mask=torch.tensor(~mask))
    tloss = torch.nn.functional.cross_entropy(head(h[:, 0]), torch.tensor(labels))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-10
    np.testing.assert_allclose(model.embedding.weight.grad, emb.weight.grad.numpy(), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(model.classifier.weight.grad, head.weight.grad.numpy(), rtol=1e-7, atol=1e-10)
    tl = ref.layers[0]
    np.testing.assert_allclose(model.encoder.layers[0].self_attn.qkv.weight.grad, tl.self_attn.in_proj_weight.grad.numpy(),
                               rtol=1e-7, atol=1e-10)
