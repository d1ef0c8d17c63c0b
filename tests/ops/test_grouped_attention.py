import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import assert_close, assert_same_backward_as_torch, check_both_modes, needs_torch, tensor, to_torch, torch
from tinygrad_nlp import ShapeError, Tensor, backend, manual_seed, reference_ops
from tinygrad_nlp.kernels.cpu import grouped_attention
from tinygrad_nlp.kernels.cpu.grouped_attention import StackedGroupAttention, query_chunks
from tinygrad_nlp.ops.attention import ScaledDotProductAttention
from tinygrad_nlp.ops.grouped_attention import GroupedQueryAttention


def qkv(rng, B=2, H=4, Hkv=2, Tq=3, Tk=3, Dh=3):
    return tensor(rng, B, H, Tq, Dh), tensor(rng, B, Hkv, Tk, Dh), tensor(rng, B, Hkv, Tk, Dh)


def repeated_then_attention(q, k, v, **kwargs):
    """Each key/value head repeated for its group (transformers' repeat_kv) with the engine's
    own concatenate, then the plain attention op."""
    G = q.shape[1] // k.shape[1]
    k, v = (F.concatenate([t[:, j:j + 1] for j in range(t.shape[1]) for _ in range(G)], axis=1) for t in (k, v))
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


def results(fn, tensors, g, seed=0):
    manual_seed(seed)
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    out.backward(g)
    return out, [out.numpy()] + [t.grad for t in tensors]


@pytest.mark.parametrize("kwargs", [{}, dict(mask=np.array([[True, True, False], [False, True, True]])),
                                    dict(is_causal=True), dict(mask=np.array([[True, False, False], [False] * 3]))])
def test_gradients(kwargs, rng):
    check_both_modes(lambda q, k, v: F.grouped_query_attention(q, k, v, **kwargs), list(qkv(rng)))


def test_gradients_of_a_cached_step_and_a_float_mask(rng):
    q, k, v = qkv(rng, H=6, Hkv=2, Tq=2, Tk=5)
    check_both_modes(lambda q, k, v: F.grouped_query_attention(q, k, v, is_causal=True), [q, k, v])
    additive = rng.standard_normal((2, 6, 2, 5))
    check_both_modes(lambda q, k, v: F.grouped_query_attention(q, k, v, mask=additive), [q, k, v])


def test_gradients_with_dropout(rng):
    def fn(q, k, v):
        manual_seed(7)
        return F.grouped_query_attention(q, k, v, dropout_p=0.3)
    check_both_modes(fn, list(qkv(rng, B=1, Tq=3, Tk=4)))


PADDING = np.array([[True, True, False, True], [True, False, False, False]])


@pytest.mark.parametrize("reference,kwargs", [
    (False, dict(mask=PADDING)), (False, dict(is_causal=True)), (False, dict(dropout_p=0.25, is_causal=True)),
    (True, dict(mask=PADDING)), (True, dict(is_causal=True)), (True, dict(dropout_p=0.25))],
    ids=["default-padding", "default-causal", "default-dropout", "reference-padding", "reference-causal",
         "reference-dropout"])
def test_equals_repeat_then_attention_and_runs_its_own_class(reference, kwargs, rng):
    """On the default paths (the grouped op's CPU path, kernels/cpu/grouped_attention.py,
    against the repeated attention's) and on the textbook ops alone (``reference_ops()``):
    the same values and gradients, and the node that ran is the grouped op's own class.
    With dropout both draw their mask of the same (B, H, Tq, Tk) shape from the same seed."""
    q, k, v = qkv(rng, B=2, H=6, Hkv=2, Tq=3, Tk=4)
    g = rng.standard_normal((2, 6, 3, 3))
    with reference_ops(reference):
        out, grouped = results(lambda *t: F.grouped_query_attention(*t, **kwargs), [q, k, v], g)
        assert type(out.creator) is (GroupedQueryAttention if reference else StackedGroupAttention)
        _, repeated = results(lambda *t: repeated_then_attention(*t, **kwargs), [q, k, v], g)
    for a, b in zip(grouped, repeated, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_cpu_path_keeps_keys_and_values_once(rng):
    q, k, v = qkv(rng, B=2, H=6, Hkv=2, Tq=3, Tk=4)
    out = F.grouped_query_attention(q, k, v, is_causal=True)
    saved = out.creator.saved_arrays()
    assert type(out.creator) is StackedGroupAttention
    assert saved["k"].shape == k.shape and saved["v"].shape == v.shape  # not repeated
    assert saved["probs"].shape == (2, 2, 3 * 3, 4)  # (B, Hkv, G Tq, Tk): each group's query heads stacked


def test_a_registered_path_of_the_base_class_is_not_taken(rng, monkeypatch):
    """Registered paths belong to the class they were registered for: one registered for
    scaled-dot-product attention (here one that would fail) never runs a grouped node
    in its place."""
    class Refuses(ScaledDotProductAttention):
        def forward(self, q, k, v):
            raise AssertionError("the base class's registered path ran a grouped-query node")
    monkeypatch.setitem(backend.kernels._faster, ScaledDotProductAttention, [Refuses])
    monkeypatch.setitem(backend.kernels._faster, GroupedQueryAttention, [])  # its own CPU path stacks onto the base
    Refuses.speeds_up, Refuses.device, Refuses.kernel_names = ScaledDotProductAttention, "cpu", ()
    q, k, v = qkv(rng)
    out = F.grouped_query_attention(q, k, v)
    assert type(out.creator) is GroupedQueryAttention
    with pytest.raises(AssertionError, match="registered path ran"):
        F.scaled_dot_product_attention(q, q, q)


def test_as_many_key_value_heads_as_query_heads_is_plain_attention(rng):
    q, k, v = qkv(rng, H=3, Hkv=3)
    g = rng.standard_normal(q.shape)
    with reference_ops():
        _, grouped = results(F.grouped_query_attention, [q, k, v], g)
        _, plain = results(F.scaled_dot_product_attention, [q, k, v], g)
    for a, b in zip(grouped, plain, strict=True):
        assert_close(a, b, rtol=0, atol=0)


def test_query_heads_of_one_group_share_their_key_value_head(rng):
    """Query heads 0 and 1 share key/value head 0: equal queries there give equal outputs;
    head 2 reads key/value head 1, which changing head 0's keys leaves alone."""
    q, k, v = (t.numpy() for t in qkv(rng, B=1, H=4, Hkv=2))
    q[:, 1] = q[:, 0]
    out = F.grouped_query_attention(Tensor(q), Tensor(k), Tensor(v)).numpy()
    assert_close(out[:, 0], out[:, 1])
    k2 = k.copy()
    k2[:, 0, 0] += 5  # key 0 of key/value head 0 only (a shift of every key would change no softmax)
    out2 = F.grouped_query_attention(Tensor(q), Tensor(k2), Tensor(v)).numpy()
    assert_close(out2[:, 2:], out[:, 2:], rtol=1e-12, atol=1e-14)  # to rounding: the CPU path's softmax shares maxima
    assert not np.allclose(out2[:, :2], out[:, :2])


@given(B=st.integers(1, 2), Hkv=st.integers(1, 3), G=st.integers(1, 3), Tq=st.integers(1, 4), extra=st.integers(0, 3),
       Dh=st.integers(1, 3), padded=st.booleans(), causal=st.booleans(), seed=st.integers(0, 999))
def test_equals_repeat_then_attention_on_random_shapes(B, Hkv, G, Tq, extra, Dh, padded, causal, seed):
    rng = np.random.default_rng(seed)
    Tk = Tq + extra
    q, k, v = qkv(rng, B, Hkv * G, Hkv, Tq, Tk, Dh)
    mask = rng.random((B, Tk)) < 0.6 if padded else None
    g = rng.standard_normal((B, Hkv * G, Tq, Dh))
    with reference_ops():
        _, grouped = results(lambda *t: F.grouped_query_attention(*t, mask=mask, is_causal=causal), [q, k, v], g)
        _, repeated = results(lambda *t: repeated_then_attention(*t, mask=mask, is_causal=causal), [q, k, v], g)
    for a, b in zip(grouped, repeated, strict=True):
        assert np.all(np.isfinite(a))
        assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_query_chunks_cover_the_queries_and_only_causal_attention_is_cut():
    assert query_chunks(256, 256, True) == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert query_chunks(100, 300, True) == [(0, 33), (33, 66), (66, 100)]  # a cached step: the last of the keys
    assert query_chunks(63, 63, True) == [(0, 63)]  # fewer than two chunks of LEAST_CHUNK positions
    assert query_chunks(256, 256, False) == [(0, 256)]
    assert query_chunks(256, 100, True) == [(0, 256)]  # more queries than keys: the first see none of them


def chunked(monkeypatch, chunks):
    """The CPU path cutting any causal attention of at least ``chunks`` positions into that many."""
    monkeypatch.setattr(grouped_attention, "LEAST_CHUNK", 1)
    monkeypatch.setattr(grouped_attention, "CAUSAL_CHUNKS", chunks)


@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), G=st.integers(1, 3), Tq=st.integers(1, 9), extra=st.integers(0, 3),
       Dh=st.integers(1, 3), padded=st.booleans(), dropout=st.sampled_from([0.0, 0.3]), chunks=st.integers(2, 4),
       seed=st.integers(0, 999))
def test_causal_chunks_equal_the_textbook(B, Hkv, G, Tq, extra, Dh, padded, dropout, chunks, seed):
    """Causal attention cut into query chunks, each against the keys it may see (uneven
    chunks, cached keys before the queries, padding, dropout): the textbook op's values,
    gradients and dropout mask."""
    rng = np.random.default_rng(seed)
    Tk = Tq + extra
    q, k, v = qkv(rng, B, Hkv * G, Hkv, Tq, Tk, Dh)
    mask = rng.random((B, Tk)) < 0.7 if padded else None
    g = rng.standard_normal((B, Hkv * G, Tq, Dh))
    run = lambda *t: F.grouped_query_attention(*t, mask=mask, is_causal=True, dropout_p=dropout)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        chunked(patch, chunks)
        out, fast = results(run, [q, k, v], g, seed=seed)
        assert type(out.creator) is StackedGroupAttention and len(out.creator.chunks) == min(chunks, Tq)
    with reference_ops():
        _, textbook = results(run, [q, k, v], g, seed=seed)
    for a, b in zip(fast, textbook, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_causal_chunks_gradients(rng, monkeypatch):
    """Float64 finite differences of the chunked path: 3 uneven chunks, 2 cached keys, padding."""
    chunked(monkeypatch, 3)
    q, k, v = qkv(rng, B=2, H=4, Hkv=2, Tq=5, Tk=7, Dh=2)
    padding = np.array([[True] * 7, [True, False, True, True, True, False, True]])
    check_both_modes(lambda q, k, v: F.grouped_query_attention(q, k, v, mask=padding, is_causal=True), [q, k, v])


def test_causal_chunks_keep_the_probabilities_of_the_keys_each_chunk_sees(rng):
    """At 128 positions the CPU path cuts a causal attention into 4 chunks: each keeps P for
    its 32 queries and the keys up to its last one (5/8 of the whole grid), k and v once."""
    q, k, v = qkv(rng, B=1, H=4, Hkv=2, Tq=128, Tk=128, Dh=4)
    out = F.grouped_query_attention(q, k, v, is_causal=True)
    saved = out.creator.saved_arrays()
    probs = [a for name, a in saved.items() if name.startswith("probs")]
    assert [p.shape for p in probs] == [(1, 2, 2 * 32, keys) for keys in (32, 64, 96, 128)]
    assert saved["k"].shape == k.shape and saved["v"].shape == v.shape
    assert sum(p.size for p in probs) * 8 == 5 * (1 * 4 * 128 * 128)


def test_a_causal_attention_whose_probabilities_would_be_made_again_is_one_piece(rng, monkeypatch):
    """Where the CPU attention keeps each row's log-sum-exp instead of P (long sequences), the
    chunks, which would each keep their P, are not taken: one piece, the same values."""
    from tinygrad_nlp.kernels.cpu import attention
    q, k, v = qkv(rng, B=1, H=4, Hkv=2, Tq=128, Tk=128, Dh=4)
    monkeypatch.setattr(attention, "KEEP_PROBABILITIES_UP_TO", 1 << 10)
    out = F.grouped_query_attention(q, k, v, is_causal=True)
    assert out.creator.chunks == [(0, 128)] and "lse" in out.creator.saved_arrays()
    with reference_ops():
        assert_close(out, F.grouped_query_attention(q, k, v, is_causal=True), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shapes,message", [
    (((2, 6, 3, 4), (2, 4, 3, 4), (2, 4, 3, 4)), r"the H=6 query heads must be a multiple of the Hkv=4 key/value heads"),
    (((2, 6, 3, 4), (2, 0, 3, 4), (2, 0, 3, 4)), r"the H=6 query heads must be a multiple of the Hkv=0"),
    (((2, 4, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4)), r"q \(2, 4, 3, 4\), k \(1, 2, 3, 4\), v \(1, 2, 3, 4\) must be"),
    (((2, 4, 3, 4), (2, 2, 3, 5), (2, 2, 3, 4)), r"k \(2, 2, 3, 5\)"),
    (((2, 4, 3, 4), (2, 2, 3, 4), (2, 1, 3, 4)), r"v \(2, 1, 3, 4\)"),
    (((2, 4, 3, 4), (2, 2, 0, 4), (2, 2, 0, 4)), r"k \(2, 2, 0, 4\) has no keys to attend to"),
    (((4, 3, 4), (2, 3, 4), (2, 3, 4)), r"must be \(B, H, Tq, Dh\), \(B, Hkv, Tk, Dh\)"),
])
def test_shape_errors_are_one_line_and_name_the_heads(shapes, message):
    with pytest.raises(ShapeError, match=message) as error:
        F.grouped_query_attention(*(Tensor(np.zeros(s)) for s in shapes))
    assert str(error.value).startswith("grouped_query_attention: ") and "\n" not in str(error.value)


def test_a_mask_that_fits_no_scores_is_refused(rng):
    with pytest.raises(ShapeError, match=r"mask of shape \(2, 5\)"):
        F.grouped_query_attention(*qkv(rng), mask=np.ones((2, 5), dtype=bool))


@needs_torch
@pytest.mark.parametrize("case", ["padding", "causal", "causal_cached"])
def test_against_torch_enable_gqa(case, rng):
    Tq = 2 if case == "causal_cached" else 4
    q, k, v = qkv(rng, B=2, H=6, Hkv=3, Tq=Tq, Tk=4, Dh=5)
    mask = np.array([[True, True, True, False], [True, False, True, True]]) if case == "padding" else None
    allowed = None if mask is None else torch.tensor(mask)[:, None, None, :]
    if case != "padding":
        allowed = torch.ones(Tq, 4, dtype=torch.bool).tril(diagonal=4 - Tq)
    tq, tk, tv = map(to_torch, (q, k, v))
    out = F.grouped_query_attention(q, k, v, mask=mask, is_causal=case != "padding")
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=allowed, enable_gqa=True)
    assert_same_backward_as_torch(out, tout, [(q, tq), (k, tk), (v, tv)], rng)
