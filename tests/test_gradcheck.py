import numpy as np
import pytest

from tinygrad_nlp import GradcheckError, Tensor
from tinygrad_nlp.gradcheck import gradcheck, probes
from tinygrad_nlp.tensor import Function


class WrongSquare(Function):
    """y = x**2 with a deliberately wrong backward (3x instead of 2x) at index 1."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        grad = 2 * self.x * g
        grad[1] *= 1.5
        return grad


@pytest.mark.parametrize("mode", ["random", "full"])
def test_detects_a_wrong_gradient(mode):
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0") as info:
        gradcheck(lambda x: WrongSquare()(x).sum(), [x], mode=mode)
    if mode == "full":
        assert "(1,)" in str(info.value) and "analytic 6" in str(info.value) and "numerical 4" in str(info.value)


def test_requires_float64():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda x: x * x, [Tensor(np.ones(2, dtype=np.float32), requires_grad=True)])


def test_passes_on_a_correct_gradient():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    assert gradcheck(lambda x: x * x * x, [x], mode="full")


def test_every_message_names_the_op_and_each_failing_input():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: WrongSquare()(a).sum() + WrongSquare()(b).sum(), [a, b], mode="full", name="square")
    message = str(info.value)
    assert "gradcheck(square): input 0 (3,): 1 of 3 elements" in message
    assert "gradcheck(square): input 1 (2,): 1 of 2 elements" in message and "<lambda>" not in message
    with pytest.raises(ValueError, match=r"gradcheck\(square\): input 0 is float32"):
        gradcheck(lambda x: x * x, [Tensor(np.ones(2, dtype=np.float32), requires_grad=True)], name="square")


def test_probes_compare_each_element():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    found = list(probes(lambda x: (x * x).sum(), [x]))
    assert [p.where for p in found] == [(0,), (1,)]
    assert [p.analytic for p in found] == [2.0, 4.0] and all(p.error < 1e-6 for p in found)
