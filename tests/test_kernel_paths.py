"""The ops' fused-kernel paths run on the CPU, with NumPy stand-ins for the element-wise
CUDA kernels (tests/kernel_standins.py): what each path does around its kernel gives what
the generic path gives. On a GPU the gpu tests run the kernels themselves."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import check_both_modes, philox_keep_mask
from tests.kernel_standins import kernels_on_the_cpu
from tinygrad_nlp import Tensor, backend, manual_seed, reference_ops
from tinygrad_nlp.kernels.cpu import segment_sum as cpu_segment_sum
from tinygrad_nlp.kernels.cuda import attention as cuda_attention
from tinygrad_nlp.kernels.cuda import segment_sum as cuda_segment_sum
from tinygrad_nlp.models import MaskedLanguageModel
from tinygrad_nlp.ops import attention
from tinygrad_nlp.optim import create_optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_draws_its_mask_from_its_philox_stream_and_draws_it_again_backward(dtype, monkeypatch):
    launched = kernels_on_the_cpu(monkeypatch, {"dropout"})
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((5, 7, 9)).astype(dtype), requires_grad=True)
    manual_seed(3)
    y = F.dropout(x, 0.3)
    assert "keep" not in y.creator.saved_arrays()  # no mask kept: its place in the generator only
    drawn = y.creator.keep
    assert (drawn.draw, drawn.first, drawn.per_example) == (0, 0, 7 * 9)
    keep = philox_keep_mask(x.size, 0.3, drawn.key0, drawn.key1, drawn.draw, drawn.first).reshape(x.shape)
    np.testing.assert_array_equal(y.numpy(), np.where(keep, x.numpy() * dtype(1 / 0.7), 0))
    g = rng.standard_normal(x.shape).astype(dtype)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, np.where(keep, g * dtype(1 / 0.7), 0))
    second = F.dropout(x, 0.3)
    assert second.creator.keep.draw == 1  # the run's next draw
    manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.3).numpy(), y.numpy())  # the seed gives the same draws
    manual_seed(3)
    with backend.examples_from(2, 0):  # a worker holding examples 2, 3, 4 draws their part of the mask
        np.testing.assert_array_equal(F.dropout(x[2:], 0.3).numpy(), y.numpy()[2:])
    assert launched == {"dropout": 5}


def philox_mask(xp, shape, p):
    """The textbook's mask drawn as the dropout kernel draws it (kernels/cuda/dropout.cu)."""
    key0, key1, draw, first = backend.philox_place(int(np.prod(shape[1:])))
    return philox_keep_mask(int(np.prod(shape)), p, key0, key1, draw, first).reshape(shape)


def test_attention_with_the_kernels_dropout_matches_the_textbook_op_with_the_same_mask(monkeypatch):
    """With the softmax and dropout kernels on, packed attention keeps no mask (Philox
    streams only) and gives the textbook op's output and gradients when the textbook
    draws the same Philox mask."""
    rng = np.random.default_rng(0)
    qkv, g = rng.standard_normal((3, 7, 3 * 16)), rng.standard_normal((3, 7, 16))
    mask = np.arange(7)[None] < np.array([[7], [4], [1]])
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"softmax", "dropout"})
        monkeypatch.setattr(attention, "keep_mask", philox_mask)
        manual_seed(5)
        x = Tensor(qkv, requires_grad=True)
        with reference_ops(not fused):
            out = F.self_attention(x, 4, mask=mask, dropout_p=0.25)
        assert type(out.creator) is (cuda_attention.PackedSelfAttentionDropoutKernel if fused else
                                     attention.PackedSelfAttention)
        assert ("keep" in out.creator.saved_arrays()) is not fused
        out.backward(g)
        results.append([out.numpy(), x.grad])
    assert launched["dropout"] == 3  # P' forward; P' for dV and the mask on dP' backward
    for textbook, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, textbook, rtol=1e-12, atol=1e-14)


def test_ragged_attention_with_the_dropout_kernel_on_keeps_each_sequences_share_of_one_mask(monkeypatch):
    """A ragged batch draws one mask for all its sequences, as the textbook op does, so
    with the dropout kernel on each sequence still keeps its share (the kernel does not
    run), and float64 finite differences (every forward reseeded) agree with the backward."""
    launched = kernels_on_the_cpu(monkeypatch, {"softmax", "dropout"})
    rng = np.random.default_rng(2)
    qkv = Tensor(rng.standard_normal((9, 12)), requires_grad=True)
    lengths = np.array([5, 0, 3, 1])

    def attend(x):
        manual_seed(7)
        return F.ragged_self_attention(x, lengths, 2, dropout_p=0.4)
    out = attend(qkv)
    assert type(out.creator) is cuda_attention.RaggedSelfAttentionKernel
    assert {"keep[0]", "keep[1]", "keep[2]"} <= set(out.creator.saved_arrays()) and not launched["dropout"]
    check_both_modes(attend, [qkv])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer, weight_decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_the_adam_kernel_path_over_the_flat_buffer_matches_the_generic_update(optimizer, weight_decay, dtype,
                                                                              monkeypatch):
    """Five steps with every gradient, then five with one parameter left without one
    (the others then go one by one): the arguments adam.cu gets, in its order."""
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"adam"})
        manual_seed(0)
        model = MaskedLanguageModel(50, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=dtype)
        opt = create_optimizer(optimizer, model.parameters(), lr=1e-2, weight_decay=weight_decay)
        rng = np.random.default_rng(0)
        for step in range(10):
            for i, p in enumerate(model.parameters()):
                grad = rng.standard_normal(p.shape).astype(dtype)
                p.grad = None if step >= 5 and i == 0 else grad
            opt.step()
        results.append([p.data.copy() for p in model.parameters()]
                       + [v.copy() for s in opt.state for k, v in sorted(s.items()) if k != "decayed_grad"])
    assert launched["adam"] >= 10
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for generic, with_kernel in zip(*results, strict=True):
        np.testing.assert_allclose(with_kernel, generic, **tol)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_the_bias_activation_kernel_path_matches_the_generic_linear(activation, monkeypatch):
    """The saved z the backward kernel overwrites on the last backward (after one that
    keeps the graph), the bias it is given, how the results are used."""
    rng = np.random.default_rng(0)
    arrays = rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    upstream = rng.standard_normal((2, 5, 4))
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"bias_activation"})
        inputs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        y = F.linear(*inputs, activation=activation)
        assert ("pre_activation" in y.creator.saved_names) is fused
        y.backward(upstream, retain_graph=True)
        y.backward(upstream)
        results.append([y.numpy()] + [t.grad for t in inputs])
    assert launched == {"bias_activation": 1, "activation_backward": 2}
    for generic, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-14)


def _softmax_family(x, targets, mask):
    """Every op whose forward or backward goes through exp_rows / softmax_backward, as
    the gpu test sums them."""
    qkv = x.reshape(2, x.shape[1], -1)
    attention_out = F.self_attention(qkv, 2, mask=mask)
    return (F.softmax(x, axis=-1) * x).sum() + F.log_softmax(x, axis=1).mean() \
        + F.cross_entropy(x.reshape(-1, x.shape[-1]), targets) + (attention_out * attention_out).sum() \
        + F.linear_cross_entropy(x.reshape(-1, x.shape[-1]), x[0, :3], targets % 3)


@pytest.mark.parametrize("width", [12, 60])
def test_the_softmax_kernel_path_matches_the_generic_path(width, monkeypatch):
    """Fully masked query rows, ignored targets, log-softmax over another axis: every
    caller of the exp_rows and softmax_backward kernels."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, width)) * 4
    targets = rng.integers(0, width, 10)
    targets[[1, 7]] = -100
    mask = np.ones((2, 5), dtype=bool)
    mask[1, :] = False
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"softmax"})
        inputs = Tensor(x, requires_grad=True)
        loss = _softmax_family(inputs, targets, mask)
        loss.backward()
        results.append([loss.numpy(), inputs.grad])
    assert launched["exp_rows"] >= 5 and launched["softmax_backward"] >= 2
    for generic, with_kernel in zip(*results):  # gradients up to ~80: rounding near 1e-12 absolute
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 1), (4, 7, 33)])
def test_the_layer_norm_kernel_path_matches_the_generic_path(shape, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape[-1:]), rng.standard_normal(shape[-1:])
    g = rng.standard_normal(shape)
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"layer_norm"})
        inputs = [Tensor(a, requires_grad=True) for a in arrays]
        y = F.layer_norm(*inputs)
        y.backward(g)
        results.append([y.numpy()] + [t.grad for t in inputs])
    assert launched == {"layer_norm_forward": 1, "layer_norm_backward": 1}
    for generic, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("ids", [[3, 1, 3, 0, 3, 1], [2], list(range(8)), []])
def test_the_embedding_backwards_cuda_path_sums_each_ids_rows_in_order(ids, monkeypatch):
    """The segment bookkeeping around kernels/cuda/embedding_backward.cu (sorting, segment starts
    and ends, where the sums go), against the CPU's scatter-add."""
    launched = kernels_on_the_cpu(monkeypatch, {"embedding_backward"})
    rng = np.random.default_rng(0)
    indices = np.array(ids, dtype=np.int64)
    values = rng.standard_normal((indices.size, 5))
    np.testing.assert_allclose(cuda_segment_sum.scatter_add_rows(9, indices, values),
                               cpu_segment_sum.scatter_add_rows(9, indices, values), rtol=1e-14, atol=1e-15)
    assert launched == ({"segment_sum": 1} if ids else {})
    weight = Tensor(rng.standard_normal((9, 5)), requires_grad=True)
    out = F.embedding(indices, weight)  # through the dispatch
    assert type(out.creator) is cuda_segment_sum.EmbeddingSegmentSumKernel
    out.backward(values)
    np.testing.assert_allclose(weight.grad, cpu_segment_sum.scatter_add_rows(9, indices, values), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("model_name", ["mlm", "classifier"])
def test_a_training_step_with_every_kernel_path_matches_the_generic_step(model_name, monkeypatch):
    """Both tutorial models (small, no dropout: the two paths draw different masks) for
    three Adam steps with every kernel's stand-in at once: the same losses and weights."""
    from tinygrad_nlp.models import TextClassifier
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (4, 12))
    targets = np.where(rng.random((4, 12)) < 0.3, rng.integers(0, 50, (4, 12)), -100)
    mask = np.arange(12)[None] < np.array([[12], [9], [5], [12]])
    labels = rng.integers(0, 2, 4)
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, set(backend.FUSED_KERNEL_NAMES))
        manual_seed(0)
        if model_name == "mlm":
            model = MaskedLanguageModel(50, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=np.float64)
        else:
            model = TextClassifier(50, 2, 16, 4, 32, 2, max_len=12, dropout=0.0).to(dtype=np.float64)
        opt = create_optimizer("adamw", model.parameters(), lr=1e-2, weight_decay=0.01)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = model.loss(ids, targets) if model_name == "mlm" else F.cross_entropy(model(ids, mask), labels)
            loss.backward()
            opt.step()
            losses.append(float(loss.numpy()))
        results.append([np.array(losses)] + [p.data.copy() for p in model.parameters()])
    assert {"exp_rows", "softmax_backward", "layer_norm_forward", "layer_norm_backward", "bias_activation",
            "activation_backward", "adam"} <= set(launched)
    # Adam divides by sqrt(v), so rounding in a near-zero gradient shows in its parameter
    # (3e-12 apart here): the weights are compared to 1e-8, the losses to 1e-12
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    for generic, with_kernel in zip(*results, strict=True):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-8, atol=1e-8)


def test_causal_attention_through_the_softmax_kernel_matches_the_generic_path(monkeypatch):
    """The triangle is written into the scores before kernels/cuda/softmax.cu's exp_rows sees them:
    with the kernel's stand-in the causal (and cached-step) attention gives the generic
    path's output and gradients."""
    rng = np.random.default_rng(2)
    arrays = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 6, 4)), rng.standard_normal((2, 2, 6, 4))
    g = rng.standard_normal((2, 2, 3, 4))
    results, launched = [], {}
    for fused in (False, True):
        if fused:
            launched = kernels_on_the_cpu(monkeypatch, {"softmax"})
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        out = F.scaled_dot_product_attention(*tensors, mask=np.array([[True] * 6, [True] * 4 + [False] * 2]),
                                             is_causal=True)
        out.backward(g)
        results.append([out.numpy()] + [t.grad for t in tensors])
    assert launched["exp_rows"] >= 1 and launched["softmax_backward"] >= 1
    for generic, with_kernel in zip(*results):
        np.testing.assert_allclose(with_kernel, generic, rtol=1e-12, atol=1e-14)
