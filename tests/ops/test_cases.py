"""Every op of the shared case table (``tinygrad_nlp.testing.CASES``): float64 finite
differences in both modes, and the value and gradients of PyTorch's same computation."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tests.helpers import check_both_modes, needs_torch, torch
from tinygrad_nlp.testing import CASES, small_inputs


def test_every_public_op_has_a_case():
    called = {name.split("_fully")[0] for name in CASES} | {"scaled_dot_product_attention", "permute"}
    missing = [name for name in F.__all__ if name not in called]
    assert not missing, f"ops without an entry in tinygrad_nlp.testing.CASES: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    inputs, constants = small_inputs(name)
    check_both_modes(lambda *x: CASES[name].ours(constants, *x), inputs)


@needs_torch
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case.torch is not None))
def test_matches_pytorch(name):
    case = CASES[name]
    inputs, constants = small_inputs(name)
    theirs = [torch.tensor(t.numpy(), requires_grad=True) for t in inputs]
    their_constants = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in constants.items()}
    out, their_out = case.ours(constants, *inputs), case.torch(torch, their_constants, *theirs)
    np.testing.assert_allclose(out.numpy(), their_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(upstream)
    their_out.backward(torch.tensor(upstream))
    for ours, theirs_ in zip(inputs, theirs):
        np.testing.assert_allclose(ours.grad, theirs_.grad.numpy(), rtol=1e-9, atol=1e-12)
