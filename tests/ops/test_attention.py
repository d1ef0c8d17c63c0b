import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import (
    assert_close,
    assert_same_backward_as_torch,
    check_both_modes,
    needs_torch,
    philox_keep_mask,
    tensor,
    to_torch,
    torch,
)
from tests.kernel_standins import kernels_on_the_cpu
from tests.test_fast_paths import compare_paths
from tinygrad_nlp import ArgumentError, ShapeError, Tensor, backend, manual_seed, reference_ops
from tinygrad_nlp.kernels.cpu import attention as cpu_attention
from tinygrad_nlp.kernels.cuda import attention as cuda_attention
from tinygrad_nlp.ops import attention as attention_op
from tinygrad_nlp.ops.attention import PackedSelfAttention, RaggedSelfAttention, ScaledDotProductAttention


def qkv(rng, B=2, H=3, T=4, D=5):
    return [tensor(rng, B, H, T, D) for _ in range(3)]


def reference(q, k, v, mask=None):
    s = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    with np.errstate(invalid="ignore"):
        s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(-1, keepdims=True) @ v


def test_no_mask(rng):
    q, k, v = qkv(rng)
    check_both_modes(F.scaled_dot_product_attention, [q, k, v])
    assert_close(F.scaled_dot_product_attention(q, k, v), reference(q.numpy(), k.numpy(), v.numpy()))


def test_key_padding_mask_with_fully_masked_row(rng):
    q, k, v = qkv(rng)
    mask = np.array([[True, True, False, False], [False, False, False, False]])
    check_both_modes(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask), [q, k, v])
    out = F.scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(out.numpy()[0], reference(q.numpy(), k.numpy(), v.numpy(), mask[:, None, None, :])[0])
    assert np.all(out.numpy()[1] == 0)  # a row with no visible key attends to nothing
    out.backward(rng.standard_normal(out.shape))
    for t in (q, k, v):
        assert np.all(np.isfinite(t.grad))
    assert np.all(q.grad[1] == 0) and np.all(k.grad[0, :, 2:] == 0) and np.all(v.grad[0, :, 2:] == 0)


def test_causal_and_additive_masks(rng):
    q, k, v = qkv(rng, B=1, H=2, T=4, D=3)
    causal = np.tril(np.ones((4, 4), dtype=bool))
    check_both_modes(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=causal), [q, k, v])
    additive = rng.standard_normal((1, 2, 4, 4))
    check_both_modes(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=additive), [q, k, v])


def test_dropout_on_probabilities(rng):
    q, k, v = qkv(rng, B=1, H=2, T=3, D=4)

    def fn(q, k, v):
        manual_seed(11)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)

    check_both_modes(fn, [q, k, v])
    out_eval = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, training=False)
    assert_close(out_eval, reference(q.numpy(), k.numpy(), v.numpy()))


def test_shape_errors(rng):
    q, k, v = qkv(rng)
    with pytest.raises(ShapeError, match=r"q \(2, 3, 4, 5\), k \(2, 3, 4, 6\)"):
        F.scaled_dot_product_attention(q, tensor(rng, 2, 3, 4, 6), v)
    with pytest.raises(ShapeError, match=r"mask of shape \(2, 5\)"):
        F.scaled_dot_product_attention(q, k, v, mask=np.ones((2, 5), dtype=bool))


@given(B=st.integers(1, 3), H=st.integers(1, 3), T=st.integers(1, 5), D=st.integers(1, 4), seed=st.integers(0, 999))
def test_padding_property(B, H, T, D, seed):
    """Random padding (including fully padded rows and T=1): finite everywhere, and the
    output of a query never depends on a masked key."""
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, B, H, T, D)
    mask = rng.random((B, T)) < 0.6
    out = F.scaled_dot_product_attention(q, k, v, mask=mask)
    out.backward(np.ones(out.shape))
    for a in (out.data, q.grad, k.grad, v.grad):
        assert np.all(np.isfinite(a))
    k2, v2 = k.numpy().copy(), v.numpy().copy()
    k2[~mask[:, None, :, None].repeat(H, 1).repeat(D, 3)] = 99.0
    v2[~mask[:, None, :, None].repeat(H, 1).repeat(D, 3)] = -99.0
    out2 = F.scaled_dot_product_attention(q, Tensor(k2), Tensor(v2), mask=mask)
    np.testing.assert_allclose(out.numpy(), out2.numpy(), atol=1e-12)


@needs_torch
def test_against_torch(rng):
    q, k, v = qkv(rng)
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    tq, tk, tv = map(to_torch, (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, mask=mask)
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask)[:, None, None, :])
    assert_same_backward_as_torch(out, tout, [(q, tq), (k, tk), (v, tv)], rng)


def split_heads_reference(qkv, n_heads, **kwargs):
    """self_attention spelled out with getitem/permute/reshape and the 4-D attention op."""
    B, T, width = qkv.shape
    D = width // 3
    heads = qkv.reshape(B, T, 3, n_heads, D // n_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(heads[0], heads[1], heads[2], **kwargs)
    return out.permute(0, 2, 1, 3).reshape(B, T, D)


@pytest.mark.parametrize("mask", [None, np.array([[True, True, False], [False, False, False]])])
def test_self_attention_gradients(mask, rng):
    qkv = tensor(rng, 2, 3, 12)
    check_both_modes(lambda x: F.self_attention(x, 2, mask=mask), [qkv])


def test_self_attention_with_dropout_gradients(rng):
    qkv = tensor(rng, 1, 4, 6)

    def fn(x):
        manual_seed(3)
        return F.self_attention(x, 1, dropout_p=0.4)

    check_both_modes(fn, [qkv])


@given(B=st.integers(1, 3), T=st.integers(1, 5), H=st.integers(1, 3), Dh=st.integers(1, 3),
       padded=st.booleans(), p=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 999))
def test_self_attention_equals_split_heads(B, T, H, Dh, padded, p, seed):
    rng = np.random.default_rng(seed)
    qkv = tensor(rng, B, T, 3 * H * Dh)
    mask = rng.random((B, T)) < 0.6 if padded else None
    if padded:
        mask[0] = False  # one example fully padded
    g = rng.standard_normal((B, T, H * Dh))
    results = []
    packed = lambda x: F.self_attention(x, H, mask=mask, dropout_p=p)  # noqa: E731
    split = lambda x: split_heads_reference(x, H, mask=mask, dropout_p=p)  # noqa: E731
    for fn in (packed, split):
        manual_seed(seed)
        qkv.grad = None
        out = fn(qkv)
        out.backward(g)
        results.append((out.numpy(), qkv.grad))
    assert_close(results[0][0], results[1][0])
    assert_close(results[0][1], results[1][1])


def test_self_attention_shape_errors():
    with pytest.raises(ShapeError, match=r"self_attention: input \(2, 3, 10\) must be \(B, T, 3 \* n_heads \* "
                                         r"head_dim\) with n_heads=2"):
        F.self_attention(Tensor(np.zeros((2, 3, 10))), 2)
    with pytest.raises(ShapeError, match=r"self_attention: input \(3, 12\)"):
        F.self_attention(Tensor(np.zeros((3, 12))), 2)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "square_2d", "causal_4d", "additive"])
def test_blocks_of_the_batch_give_the_same_result(mask_kind, rng, monkeypatch):
    """Forward and backward in blocks of one example (as at the classifier's shapes)
    equal the single-block computation. A 2-D boolean (B, Tk) mask is a key-padding mask,
    as documented, even when it is square."""
    q, k, v = qkv(rng, B=4, H=2, T=4, D=3)
    mask = {"none": None, "padding": rng.random((4, 4)) < 0.7, "square_2d": np.tril(np.ones((4, 4), dtype=bool)),
            "causal_4d": np.tril(np.ones((1, 1, 4, 4), dtype=bool)),
            "additive": rng.standard_normal((4, 1, 4, 4))}[mask_kind]
    g = rng.standard_normal((4, 2, 4, 3))
    results = []
    for block_bytes in (1 << 18, 1):
        monkeypatch.setattr(backend.arrays, "CACHE_BLOCK_BYTES", block_bytes)
        manual_seed(5)
        for t in (q, k, v):
            t.grad = None
        out = F.scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=0.2)
        out.backward(g)
        results.append([out.numpy()] + [t.grad for t in (q, k, v)])
    for a, b in zip(*results):
        assert_close(a, b)
    if mask_kind == "square_2d":
        manual_seed(5)
        ref = F.scaled_dot_product_attention(q, k, v, mask=mask[:, None, None, :], dropout_p=0.2)
        assert_close(results[0][0], ref)


@pytest.mark.parametrize("case", ["padding", "causal", "causal_cached", "fully_masked_row", "float_mask", "dropout"])
def test_long_sequence_attention_that_makes_its_probabilities_again_equals_the_kept_ones(case, monkeypatch):
    """Above KEEP_PROBABILITIES_UP_TO (kernels/cpu/attention.py) the CPU path keeps each
    row's log-sum-exp, not P, and makes P again in the backward: the same outputs and
    gradients as keeping P (which the PyTorch cases check), float64 finite differences,
    and no (B, H, Tq, Tk) array saved."""
    from tinygrad_nlp.gradcheck import gradcheck
    rng = np.random.default_rng(4)
    Tq = 2 if case == "causal_cached" else 5
    arrays = rng.standard_normal((2, 2, Tq, 3)), rng.standard_normal((2, 2, 5, 3)), rng.standard_normal((2, 2, 5, 4))
    mask = {"padding": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool),
            "fully_masked_row": np.array([[0, 0, 0, 0, 0], [1, 1, 0, 1, 1]], bool),
            "float_mask": rng.standard_normal((2, 1, Tq, 5))}.get(case)
    kwargs = dict(mask=mask, is_causal=case.startswith("causal"), dropout_p=0.3 if case == "dropout" else 0.0)

    def attend(q, k, v):
        manual_seed(1)
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    g = rng.standard_normal((2, 2, Tq, 4))
    results = []
    for limit in (1 << 40, 0):
        monkeypatch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", limit)
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        out = attend(*tensors)
        assert ("probs" in out.creator.saved_arrays()) is (limit > 0)
        assert ("lse" in out.creator.saved_arrays()) is (limit == 0)
        assert type(out.creator) is (cpu_attention.BlockedAttention if limit else cpu_attention.RecomputedAttention)
        out.backward(g)
        results.append([out.numpy()] + [t.grad for t in tensors])
    for kept, made_again in zip(*results):
        np.testing.assert_allclose(made_again, kept, rtol=1e-12, atol=1e-13)
    assert gradcheck(attend, [Tensor(a, requires_grad=True) for a in arrays], mode="full")



# -- the fast paths (kernels/cpu/attention.py, kernels/cuda/attention.py) against the textbook op --
MASKINGS = ["none", "padding", "causal", "causal_padding", "all_masked", "float"]


def masking_of(kind, rng, B, Tq, Tk):
    """(mask, is_causal) of a kind of masking; "all_masked": padding with every key of
    example 0 masked. The last example's first two keys are never masked: a gradient of q
    or k that is zero only up to rounding (every row with one visible key has P = 1,
    exactly so in the textbook, to rounding on a path that shares a block's maximum) has
    no scale to hold rounding to."""
    mask = None
    if kind in ("padding", "causal_padding", "all_masked"):
        mask = rng.random((B, Tk)) < 0.6
        mask[-1, :2] = True
        mask[0] = mask[0] & (kind != "all_masked")
    elif kind == "float":
        mask = rng.standard_normal((B, 1, Tq, Tk))
    return mask, kind.startswith("causal")


def assert_path_equals_textbook(fn, arrays, path, what, recompute=False, one_example_per_block=False):
    """``compare_paths`` (tests/test_fast_paths.py) of ``fn`` on Tensors of ``arrays``, the
    default run taking the registered class ``path``: with ``recompute`` the size of P kept
    set to 0 (as at long sequences), with ``one_example_per_block`` batch blocks of one example."""
    taken = []

    def recorded(*tensors):
        out = fn(*tensors)
        taken.append(type(out.creator))
        return out
    with pytest.MonkeyPatch.context() as patch:
        if recompute:
            patch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", 0)
        if one_example_per_block:
            patch.setattr(backend.arrays, "CACHE_BLOCK_BYTES", 1)
        compare_paths(recorded, lambda dtype: [Tensor(a.astype(dtype), requires_grad=True) for a in arrays], what)
    assert taken[1] is taken[3] is path, f"{what}: the default run took {taken[1].__name__}, not {path.__name__}"
    assert taken[0] is taken[2] is path.speeds_up


@given(B=st.integers(1, 3), H=st.integers(1, 3), Tq=st.integers(1, 5), cached=st.integers(0, 3), D=st.integers(1, 4),
       masking=st.sampled_from(MASKINGS), p=st.sampled_from([0.0, 0.3]), recompute=st.booleans(),
       one_example_per_block=st.booleans(), seed=st.integers(0, 2**16))
def test_cpu_attention_paths_equal_the_textbook_op(B, H, Tq, cached, D, masking, p, recompute, one_example_per_block,
                                                   seed):
    """P kept (BlockedAttention) or made again from the log-sum-exp (RecomputedAttention),
    in one block or one example per block: the textbook op's values and float64 gradients.
    With dropout, one seed gives both the same mask: each draws one mask of the full
    (B, H, Tq, Tk) shape."""
    Tk = Tq + cached  # the queries are the last Tq of the keys (a decoding step when cached > 0)
    assume(Tk >= 2)  # one key: P = 1 and the gradients of q and k are 0 up to rounding (masking_of)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((B, H, Tq, D)), rng.standard_normal((B, H, Tk, D)),
              rng.standard_normal((B, H, Tk, D + 1))]
    mask, causal = masking_of(masking, rng, B, Tq, Tk)

    def attend(q, k, v):
        manual_seed(seed)
        return F.scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p, is_causal=causal)
    path = cpu_attention.RecomputedAttention if recompute else cpu_attention.BlockedAttention
    assert_path_equals_textbook(attend, arrays, path, f"attention ({masking}, p={p})", recompute, one_example_per_block)


@given(B=st.integers(1, 3), T=st.integers(2, 5), H=st.integers(1, 3), Dh=st.integers(1, 3),
       masking=st.sampled_from(MASKINGS), p=st.sampled_from([0.0, 0.3]), recompute=st.booleans(),
       one_example_per_block=st.booleans(), seed=st.integers(0, 2**16))
def test_cpu_self_attention_paths_equal_the_textbook_op(B, T, H, Dh, masking, p, recompute, one_example_per_block,
                                                        seed):
    """The packed paths: PackedSelfAttention's head split and merge around the blocked or
    the recomputing attention."""
    rng = np.random.default_rng(seed)
    mask, causal = masking_of(masking, rng, B, T, T)

    def attend(qkv):
        manual_seed(seed)
        return F.self_attention(qkv, H, mask=mask, dropout_p=p, is_causal=causal)
    path = cpu_attention.RecomputedPackedSelfAttention if recompute else cpu_attention.BlockedPackedSelfAttention
    assert_path_equals_textbook(attend, [rng.standard_normal((B, T, 3 * H * Dh))], path,
                                f"self_attention ({masking}, p={p})", recompute, one_example_per_block)


@given(lengths=st.lists(st.integers(0, 5), min_size=1, max_size=4).filter(lambda lengths: max(lengths) >= 2),
       H=st.integers(1, 3), Dh=st.integers(1, 3),
       query_only_rows=st.booleans(), causal=st.booleans(), p=st.sampled_from([0.0, 0.3]), recompute=st.booleans(),
       seed=st.integers(0, 2**16))
def test_cpu_ragged_self_attention_paths_equal_the_textbook_op(lengths, H, Dh, query_only_rows, causal, p, recompute,
                                                               seed):
    """Every sequence on the blocked or the recomputing attention, chosen once for all of
    them; empty sequences, rows that are queries only (a sequence of only such rows
    attends to nothing)."""
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths)
    N = int(lengths.sum())
    keys = rng.random(N) < 0.6 if query_only_rows else None
    if keys is not None:  # one sequence with two keys at least, as masking_of keeps
        longest = int(lengths[:lengths.argmax()].sum())
        keys[longest:longest + 2] = True

    def attend(qkv):
        manual_seed(seed)
        return F.ragged_self_attention(qkv, lengths, H, key_mask=keys, dropout_p=p, is_causal=causal)
    path = cpu_attention.RecomputedRaggedSelfAttention if recompute and N else cpu_attention.BlockedRaggedSelfAttention
    assert_path_equals_textbook(attend, [rng.standard_normal((N, 3 * H * Dh))], path,
                                f"ragged_self_attention (lengths {lengths.tolist()}, p={p})", recompute)


def test_ragged_fast_path_decides_once_for_every_sequence(monkeypatch):
    """Each sequence's node is of the one class the ragged path chose."""
    rng = np.random.default_rng(0)
    x, lengths = Tensor(rng.standard_normal((9, 18)), requires_grad=True), np.array([5, 0, 4])
    for limit, inner in ((0, cpu_attention.RecomputedAttention), (1 << 20, cpu_attention.BlockedAttention)):
        monkeypatch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", limit)
        out = F.ragged_self_attention(x, lengths, 2)
        assert [type(attention) for _, _, attention in out.creator.segments] == [inner, inner]


def test_ragged_self_attention_calls_each_sequences_attention_as_an_op(monkeypatch):
    """Each sequence's attention goes through ``Function.__call__``: its ``check`` runs
    on the sequence's q, k, v, it records which inputs want a gradient, and the
    dispatch keeps the class the ragged op named (the textbook one in reference mode)."""
    checked = []
    check = ScaledDotProductAttention.check
    monkeypatch.setattr(ScaledDotProductAttention, "check",
                        lambda node, q, k, v: checked.append(q.shape) or check(node, q, k, v))
    x, lengths = Tensor(np.random.default_rng(0).standard_normal((9, 18)), requires_grad=True), np.array([5, 0, 4])
    for reference, inner in ((False, cpu_attention.BlockedAttention), (True, ScaledDotProductAttention)):
        checked.clear()
        with reference_ops(reference):
            segments = F.ragged_self_attention(x, lengths, 2).creator.segments
        assert checked == [(1, 2, 5, 3), (1, 2, 4, 3)]
        assert [(type(node), node.needs_input_grad) for _, _, node in segments] == [(inner, (True, True, True))] * 2


def test_textbook_attention_saves_q_k_v_the_probabilities_and_the_boolean_mask(rng):
    q, k, v = qkv(rng)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    with reference_ops():
        manual_seed(0)
        out = F.scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=0.3)
    saved = out.creator.saved_arrays()
    assert type(out.creator) is ScaledDotProductAttention and list(saved) == ["q", "k", "v", "probs", "keep"]
    assert saved["probs"].shape == saved["keep"].shape == (2, 3, 4, 4) and saved["keep"].dtype == bool
    np.testing.assert_allclose(saved["probs"].sum(-1), 1)
    assert np.all(saved["probs"][0, ..., 2:] == 0)


@pytest.mark.parametrize("dropout_kernel", [False, True])
@pytest.mark.parametrize("op", [ScaledDotProductAttention, PackedSelfAttention, RaggedSelfAttention])
def test_cuda_attention_classes_on_the_kernels_stand_ins_equal_the_textbook_op(op, dropout_kernel, monkeypatch):
    """kernels/cuda/attention.py with the softmax kernels' NumPy stand-ins
    (tests/kernel_standins.py): the textbook op's values and float64 gradients, fully
    masked rows included. With the dropout kernel too, the mask comes from a Philox
    stream, is not saved and is drawn again in the backward; the textbook op is given
    that stream's mask."""
    names = {"softmax", "dropout"} if dropout_kernel else {"softmax"}
    launched = kernels_on_the_cpu(monkeypatch, names)
    if dropout_kernel:
        def philox_mask(xp, shape, p):
            key0, key1, draw, first = backend.philox_place(int(np.prod(shape[1:])))
            return philox_keep_mask(int(np.prod(shape)), p, key0, key1, draw, first).reshape(shape)
        monkeypatch.setattr(attention_op, "keep_mask", philox_mask)
    rng = np.random.default_rng(3)
    padding = np.array([[True, True, False, False, False], [False] * 5, [True] * 5])
    lengths, keys = np.array([3, 0, 4, 1]), np.array([True, True, False, False, True, True, True, False])
    calls = {ScaledDotProductAttention: ([(3, 2, 5, 4), (3, 2, 5, 4), (3, 2, 5, 3)],
                                         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=padding,
                                                                                        dropout_p=0.3, is_causal=True)),
             PackedSelfAttention: ([(3, 5, 24)], lambda x: F.self_attention(x, 2, mask=padding, dropout_p=0.3)),
             RaggedSelfAttention: ([(8, 24)], lambda x: F.ragged_self_attention(x, lengths, 2, key_mask=keys,
                                                                                 dropout_p=0.3))}
    shapes, call = calls[op]
    saved = []

    def attend(*tensors):
        manual_seed(4)
        out = call(*tensors)
        saved.append(set(out.creator.saved_arrays()))
        return out
    kind = "DropoutKernel" if dropout_kernel else "Kernel"
    path = {ScaledDotProductAttention: getattr(cuda_attention, f"Attention{kind}"),
            PackedSelfAttention: getattr(cuda_attention, f"PackedSelfAttention{kind}"),
            RaggedSelfAttention: cuda_attention.RaggedSelfAttentionKernel}[op]
    assert_path_equals_textbook(attend, [rng.standard_normal(shape) for shape in shapes], path, path.__name__)
    assert launched["exp_rows"] and launched["softmax_backward"]
    philox = dropout_kernel and op is not RaggedSelfAttention
    assert bool(launched["dropout"]) is philox
    assert all(any(name.startswith("keep") for name in names) is not philox for names in saved[1::2])


# -- ragged_self_attention: sequences stored one after another, no padding ----------------
@given(B=st.integers(1, 3), T=st.integers(1, 5), H=st.integers(1, 3), Dh=st.integers(1, 3),
       causal=st.booleans(), seed=st.integers(0, 999))
def test_ragged_self_attention_equals_self_attention_at_the_real_rows(B, T, H, Dh, causal, seed):
    """The real tokens of a right-padded batch, one sequence after another, give
    self_attention's outputs at those rows and the same input gradients there (float64)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, B)
    mask = np.arange(T)[None] < lengths[:, None]
    rows = np.flatnonzero(mask)
    grid = rng.standard_normal((B, T, 3 * H * Dh))
    g = rng.standard_normal((B, T, H * Dh)) * mask[..., None]  # no gradient flows in at the padding
    padded, packed = Tensor(grid, requires_grad=True), Tensor(grid.reshape(B * T, -1)[rows], requires_grad=True)
    out = F.self_attention(padded, H, mask=mask, is_causal=causal)
    out.backward(g)
    ours = F.ragged_self_attention(packed, lengths, H, is_causal=causal)
    if rows.size:
        ours.backward(g.reshape(B * T, -1)[rows])
        assert_close(packed.grad, padded.grad.reshape(B * T, -1)[rows], rtol=1e-10, atol=1e-12)
    assert_close(ours.numpy(), out.numpy().reshape(B * T, -1)[rows], rtol=1e-10, atol=1e-12)


def test_ragged_self_attention_query_only_rows_and_dropout_gradients(rng):
    x = tensor(rng, 7, 12)
    lengths, keys = np.array([3, 1, 0, 3]), np.array([True, False, True, False, True, True, True])

    def fn(x):
        manual_seed(5)
        return F.ragged_self_attention(x, lengths, 2, key_mask=keys, dropout_p=0.4)
    check_both_modes(fn, [x])
    out = F.ragged_self_attention(x, lengths, 2, key_mask=keys)
    assert np.all(out.numpy()[3] == 0)  # a sequence whose one row is no key attends to nothing
    assert set(out.creator.saved_arrays()) == {"probs[0]", "probs[1]", "probs[2]"}  # one per non-empty sequence


def test_ragged_self_attention_makes_its_probabilities_again_above_the_limit(monkeypatch):
    """Over the limit, counted over every sequence's P together, each sequence keeps its
    log-sum-exp instead: the same outputs and gradients."""
    rng = np.random.default_rng(2)
    x, g, lengths = rng.standard_normal((9, 18)), rng.standard_normal((9, 6)), np.array([5, 4])
    results = []
    for limit, saved in ((2 * 41 * 8 - 1, {"lse[0]", "lse[1]"}), (2 * 41 * 8, {"probs[0]", "probs[1]"})):
        monkeypatch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", limit)  # 2 heads, 5^2 + 4^2 = 41, float64
        t = Tensor(x, requires_grad=True)
        out = F.ragged_self_attention(t, lengths, 2, is_causal=True)
        assert set(out.creator.saved_arrays()) == saved
        out.backward(g)
        results.append((out.numpy(), t.grad))
    for kept, made_again in zip(*results):
        np.testing.assert_allclose(made_again, kept, rtol=1e-12, atol=1e-13)


def test_ragged_self_attention_errors():
    x = Tensor(np.zeros((5, 12)))
    with pytest.raises(ShapeError, match=r"ragged_self_attention: input \(5, 10\) must be \(rows, 3 \* n_heads \* "
                                         r"head_dim\) with n_heads=2"):
        F.ragged_self_attention(Tensor(np.zeros((5, 10))), [5], 2)
    with pytest.raises(ShapeError, match=r"ragged_self_attention: lengths \[2, 2\] must be non-negative integers "
                                         r"summing to the input's 5 rows"):
        F.ragged_self_attention(x, [2, 2], 2)
    with pytest.raises(ShapeError, match=r"lengths \[6, -1\] must be non-negative"):
        F.ragged_self_attention(x, [6, -1], 2)
    with pytest.raises(ShapeError, match=r"ragged_self_attention: key_mask bool \(4,\) must be boolean with one "
                                         r"entry per input row \(5,\)"):
        F.ragged_self_attention(x, [5], 2, key_mask=np.ones(4, dtype=bool))
    with pytest.raises(ArgumentError, match=r"ragged_self_attention dropout: probability p must be in \[0, 1\], "
                                            r"got 1.5"):
        F.ragged_self_attention(x, [5], 2, dropout_p=1.5)


def test_ragged_positions_that_do_not_fit_the_rows_or_seq_len_are_one_line_errors():
    qkv = Tensor(np.zeros((5, 12)))
    for positions, seq_len in [(np.arange(4), 6), (np.array([0, 1, 2, 0, 6]), 6), (np.arange(5), None)]:
        with pytest.raises(ShapeError, match=r"ragged_self_attention: positions \(\d+,\) must give each of the 5 rows "
                                             r"its place in 0\.\.seq_len-1"):
            F.ragged_self_attention(qkv, np.array([3, 2]), 2, dropout_p=0.1, positions=positions, seq_len=seq_len)


def test_ragged_attention_with_positions_draws_the_whole_grids_dropout_mask():
    """Sequences given their positions in a padded (B, T) batch get the entries of the
    batch's (B, H, T, T) draw at those positions: the padded self_attention's mask."""
    rng = np.random.default_rng(4)
    B, T, H, Dh = 3, 5, 2, 2
    lengths = np.array([5, 3, 4])
    real = np.arange(T)[None] >= T - lengths[:, None]  # left-padded: a row's positions do not start at 0
    rows = np.flatnonzero(real)
    grid = rng.standard_normal((B, T, 3 * H * Dh))
    manual_seed(8)
    padded = F.self_attention(Tensor(grid), H, mask=real, dropout_p=0.5)
    manual_seed(8)
    packed = F.ragged_self_attention(Tensor(grid.reshape(B * T, -1)[rows]), lengths, H, dropout_p=0.5,
                                     positions=rows % T, seq_len=T)
    np.testing.assert_allclose(packed.numpy(), padded.numpy().reshape(B * T, -1)[rows], rtol=1e-12, atol=1e-12)
