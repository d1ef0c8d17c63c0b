"""Every faster implementation registered in ``kernels/`` equals its textbook op: over the
shared case table and random shapes, the default run (which takes the registered paths)
and ``reference_ops()`` (the textbook classes alone) give the same values to float32
rounding and the same float64 gradients to 1e-10 relative; float64 finite differences
hold on the textbook path too. A registered path no case reaches fails here."""
import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tests.helpers import check_both_modes
from tinygrad_nlp import Tensor, backend, reference_ops
from tinygrad_nlp.kernels.cpu import attention as cpu_attention
from tinygrad_nlp.testing import CASES, small_inputs

CPU_PATHS = [fast for fast in backend.kernels.registered() if fast.device == "cpu"]
# The CPU attention paths make P again from its log-sum-exp only above a size of P
# (KEEP_PROBABILITIES_UP_TO) that no small case reaches: the attention cases run once more
# with that size set to 0, as at long sequences. (Grouped-query attention has no CPU path of
# its own yet: its textbook class runs by default too.)
LONG_SEQUENCE_CASES = sorted(name for name in CASES if "attention" in name and not name.startswith("grouped_query"))


@pytest.fixture
def chosen(monkeypatch):
    """A Counter of the classes the dispatch picks while the test runs."""
    picked = collections.Counter()
    choose = backend.kernels.implementation

    def implementation(node, arrays):
        cls = choose(node, arrays)
        picked[cls] += 1
        return cls
    monkeypatch.setattr(backend.kernels, "implementation", implementation)
    return picked


def assert_same(fast, textbook, rtol, what):
    fast, textbook = np.asarray(fast), np.asarray(textbook)
    assert fast.shape == textbook.shape, f"{what}: shape {fast.shape} != {textbook.shape}"
    scale = max(float(np.abs(textbook).max(initial=0.0)), np.finfo(textbook.dtype).tiny)
    worst = float(np.abs(fast - textbook).max(initial=0.0))
    assert worst <= rtol * scale, f"{what}: the fast path differs by {worst:.3g} (relative {worst / scale:.3g} > {rtol})"


def run(fn, inputs, upstream_seed=1):
    """fn's output and the gradient of every input under one fixed upstream gradient."""
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(np.random.default_rng(upstream_seed).standard_normal(out.shape).astype(out.dtype))
    return out.numpy(), [t.grad for t in inputs]


def compare_paths(fn, make_inputs, what, float32_rtol=2e-5):
    """fn on the default paths against fn on the textbook ops: float32 values, float64
    values and gradients. ``float32_rtol``: float32 rounding, times the condition of
    the inputs where it is large (a row offset far above its spread)."""
    for dtype, rtol in ((np.float32, float32_rtol), (np.float64, 1e-10)):
        with reference_ops():
            textbook = run(fn, make_inputs(dtype))
        fast = run(fn, make_inputs(dtype))
        assert_same(fast[0], textbook[0], rtol, f"{what} {np.dtype(dtype).name} value")
        if dtype == np.float64:
            for i, (got, want) in enumerate(zip(fast[1], textbook[1])):
                assert_same(got, want, rtol, f"{what} gradient of input {i}")


def case_inputs(name):
    return lambda dtype: small_inputs(name, dtype=dtype)[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_path_equals_textbook_op(name, chosen):
    _, constants = small_inputs(name)
    compare_paths(lambda *x: CASES[name].ours(constants, *x), case_inputs(name), name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_textbook_op_matches_finite_differences(name):
    inputs, constants = small_inputs(name)
    with reference_ops():
        check_both_modes(lambda *x: CASES[name].ours(constants, *x), inputs)


@pytest.mark.parametrize("name", LONG_SEQUENCE_CASES)
def test_default_path_at_long_sequences_equals_textbook_op(name, monkeypatch):
    monkeypatch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", 0)
    _, constants = small_inputs(name)
    compare_paths(lambda *x: CASES[name].ours(constants, *x), case_inputs(name), f"{name} (P made again)")
    inputs, _ = small_inputs(name)
    saved = CASES[name].ours(constants, *inputs).creator.saved_arrays()
    assert any(key.startswith("lse") for key in saved), f"{name}: P was kept, not made again ({list(saved)})"


def run_case(name):
    """The case at its small shapes, forward and backward, on the paths switched on."""
    inputs, constants = small_inputs(name)
    return run(lambda *x: CASES[name].ours(constants, *x), inputs)


def test_every_registered_cpu_path_is_reached_by_a_case(chosen, monkeypatch):
    for name in CASES:
        run_case(name)
    monkeypatch.setattr(cpu_attention, "KEEP_PROBABILITIES_UP_TO", 0)  # as at long sequences
    for name in LONG_SEQUENCE_CASES:
        run_case(name)
    missed = [fast.__name__ for fast in CPU_PATHS if not chosen[fast]]
    assert not missed, f"registered CPU paths no case of tinygrad_nlp.testing.CASES runs: {missed}"


def test_reference_mode_runs_only_textbook_classes(chosen):
    with reference_ops():
        for name in CASES:
            run_case(name)
    assert not [cls.__name__ for cls in chosen if getattr(cls, "speeds_up", None) is not None]


def test_reference_mode_is_switched_by_the_environment_and_nests():
    assert not backend.kernels.in_reference_mode()
    with reference_ops():
        assert backend.kernels.in_reference_mode()
        with reference_ops(False):
            assert not backend.kernels.in_reference_mode()
        assert backend.kernels.in_reference_mode()
    assert not backend.kernels.in_reference_mode()


def test_every_registered_path_is_a_subclass_that_names_its_op():
    for fast in backend.kernels.registered():
        assert issubclass(fast, fast.speeds_up) and fast is not fast.speeds_up
        assert fast.__doc__ is None or fast.speeds_up.__name__  # the module docstring says which op it equals
        assert "__init__" not in vars(fast) and "check" not in vars(fast), \
            f"{fast.__name__} must keep its op's settings and checks"


# -- random shapes, one strategy per op family ----------------------------------------
dims = st.integers(1, 6)


@given(rows=st.lists(dims, min_size=1, max_size=3), width=st.integers(1, 40), seed=st.integers(0, 2**16),
       offset=st.sampled_from([0.0, 1e3]))
def test_layer_norm_fast_path_on_random_shapes(rows, width, seed, offset):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((*rows, width)) + offset, rng.standard_normal(width), rng.standard_normal(width)
    compare_paths(lambda *t: F.layer_norm(*t), lambda dtype: [Tensor(a.astype(dtype), requires_grad=True)
                                                              for a in (x, w, b)], "layer_norm",
                  float32_rtol=2e-5 * (1 + offset))


def test_register_refuses_an_unknown_device_or_kernel_and_a_class_that_is_not_the_ops():
    from tinygrad_nlp.ops.layernorm import LayerNorm
    from tinygrad_nlp.ops.softmax import Softmax
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.kernels.register(LayerNorm, device="tpu")
    with pytest.raises(ValueError, match="unknown kernel 'warp'"):
        backend.kernels.register(LayerNorm, device="cuda", kernel="warp")
    with pytest.raises(TypeError, match="must be a subclass of LayerNorm"):
        backend.kernels.register(LayerNorm, device="cpu")(Softmax)
    assert Softmax not in backend.kernels.registered(LayerNorm)
