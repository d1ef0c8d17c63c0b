import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import AnomalyError, GraphError, Tensor, detect_anomaly, no_grad


def test_attributes():
    t = Tensor(np.arange(6, dtype=np.float64).reshape(2, 3), requires_grad=True)
    assert t.shape == (2, 3) and t.dtype == np.float64 and t.device == "cpu" and t.grad is None
    assert isinstance(t.numpy(), np.ndarray) and t.to("cpu") is t
    assert Tensor([1.0, 2.0]).dtype == np.float32  # Python floats default to float32
    assert Tensor(np.array([1, 2])).dtype == np.int64
    d = t.detach()
    assert not d.requires_grad and d.data is t.data
    assert "shape=(2, 3)" in repr(t)


def test_gradients_accumulate_for_reused_tensors_and_across_calls():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])
    (x * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 8.0])  # accumulated, not overwritten


def test_shared_gradient_arrays_are_not_aliased():
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1, 1, 1])


def test_a_post_accumulate_grad_hook_sees_each_gradient_after_it_is_added_and_can_be_removed():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    seen = []
    handle = x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.copy()))
    (x * x).sum().backward()
    grad = x.grad
    (x * 1.0).sum().backward()
    assert x.grad is grad  # a later gradient is added in place
    np.testing.assert_array_equal(seen[0], [4.0, 6.0])
    np.testing.assert_array_equal(seen[1], [5.0, 7.0])
    x.accumulate_grad(np.ones(2))  # what a backward does at the leaf, hooks included
    np.testing.assert_array_equal(seen[2], [6.0, 8.0])
    handle.remove()
    (x * 1.0).sum().backward()
    assert len(seen) == 3


def test_a_hook_may_take_the_gradient_away():
    """As a data-parallel replica's parameter does: the gradient goes elsewhere, the leaf keeps none."""
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    taken = []

    def take(t):
        taken.append(t.grad)
        t.grad = None
    x.register_post_accumulate_grad_hook(take)
    (x + y).sum().backward()  # the add's backward hands one array to both leaves
    assert x.grad is None and taken[0] is not y.grad
    np.testing.assert_array_equal(taken[0], y.grad)
    with pytest.raises(GraphError, match="the output of Mul; hooks go on leaf tensors"):
        (x * 2.0).register_post_accumulate_grad_hook(take)


def test_no_subclass_of_tensor_overrides_its_private_methods():
    from tinygrad_nlp.nn.module import Loss, Parameter
    from tinygrad_nlp.nn.replicas import ReplicaParameter
    private = {name for name in vars(Tensor) if name.startswith("_") and not name.startswith("__")}
    for cls in (Parameter, Loss, ReplicaParameter):
        assert not private & set(vars(cls)), cls


def test_explicit_upstream_gradient_and_scalar_requirement():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = x * 3.0
    with pytest.raises(GraphError, match=r"scalar, got shape \(2, 2\)"):
        y.backward()
    y.backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [[3, 6], [9, 12]])


def test_long_chain_does_not_recurse():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000])


def test_graph_is_released_and_second_backward_fails():
    x = Tensor(np.ones(2), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(GraphError, match="already freed"):
        y.backward()
    z = (x * 2.0).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(x.grad, [6, 6])


def test_no_grad_records_nothing():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.creator is None


def test_detect_anomaly_names_the_op():
    x = Tensor(np.array([-1.0, 1.0]), requires_grad=True)
    with detect_anomaly():
        with pytest.raises(AnomalyError, match="Log"):
            F.log(x)
        y = F.log(Tensor(np.array([0.0, 1.0]) + 1e-300, requires_grad=True) * 1.0)
        with pytest.raises(AnomalyError, match="gradient computed by (Log|Mul)"):
            (y * 1e300).sum().backward()


def test_diamond_graph(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    a = F.exp(x)
    b = a * a
    c = a + b
    c.sum().backward()
    e = np.exp(x.data)
    np.testing.assert_allclose(x.grad, e + 2 * e * e)


def test_a_node_names_what_it_saved_and_release_drops_it():
    import tinygrad_nlp.functional as F
    x, w, b = (Tensor(np.ones(s), requires_grad=True) for s in ((2, 4), (4,), (4,)))
    node = F.layer_norm(x, w, b).creator
    assert sorted(node.saved_arrays()) == ["mean", "rstd", "weight", "x"]
    assert node.saved_arrays()["rstd"].shape == (2, 1)
    node.release()
    assert node.saved_arrays() == {} and node.parents == () and node.released


def test_the_graph_holds_no_intermediate_that_no_backward_saved():
    import gc
    import weakref
    x = Tensor(np.array([-1.0, 2.0, 3.0]), requires_grad=True)
    shifted = x + 1.0  # Add saves nothing; ReLU saves only its mask
    gone_tensor, gone_array = weakref.ref(shifted), weakref.ref(shifted.data)
    loss = (shifted.relu() * 3.0).sum()
    del shifted
    gc.collect()
    assert gone_tensor() is None and gone_array() is None
    loss.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 3.0, 3.0])


def test_a_forward_knows_no_gradient_is_wanted_under_no_grad():
    from tinygrad_nlp.tensor import Function
    seen = []

    class Probe(Function):
        def forward(self, x):
            seen.append(self.needs_input_grad)
            return x * 2

        def backward(self, g):
            return g * 2

    x = Tensor(np.ones(2), requires_grad=True)
    Probe()(x)
    with no_grad():
        Probe()(x)
    Probe()(Tensor(np.ones(2)))
    assert seen == [(True,), (False,), (False,)]


def test_the_package_root_gives_a_tensor_with_all_its_operators_in_a_fresh_interpreter():
    import subprocess
    import sys
    code = ("import numpy as np\nfrom tinygrad_nlp import Tensor\n"
            "a = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)\n"
            "y = ((a + a) * a - a / 2) ** 2 @ a.T\n"
            "y = (-y).sum() + a[0].mean() + a.reshape(3, 2).T.exp().log().relu().tanh().sum()\n"
            "y.backward()\nprint(a.grad.shape, float(y.numpy()) < 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(2,", "3)", "True"]
