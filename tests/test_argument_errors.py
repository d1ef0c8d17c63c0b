"""Settings outside their range raise ArgumentError (a ValueError) naming the value."""
import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import ArgumentError, Tensor
from tinygrad_nlp.gradcheck import gradcheck
from tinygrad_nlp.nn import FeedForward, Parameter
from tinygrad_nlp.optim import SGD, Adam, create_optimizer

x = Tensor(np.ones((2, 3)), requires_grad=True)
q = Tensor(np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("call,message", [
    (lambda: F.dropout(x, 1.5), r"dropout: probability p must be in \[0, 1\], got 1.5"),
    (lambda: F.scaled_dot_product_attention(q, q, q, dropout_p=-0.1),
     r"scaled_dot_product_attention dropout: probability p must be in \[0, 1\], got -0.1"),
    (lambda: FeedForward(4, 8, activation="swish"),
     r"FeedForward: activation must be one of \['gelu', 'gelu_tanh', 'relu', 'silu'\], got 'swish'"),
    (lambda: Adam([]), r"Adam: got no parameters"),
    (lambda: SGD([Parameter(np.ones(2))], lr=-1.0), r"SGD: learning rate must be >= 0, got -1.0"),
    (lambda: create_optimizer("lamb", [Parameter(np.ones(2))], lr=0.1),
     r"unknown optimizer 'lamb'; expected one of \['adam', 'adamw', 'sgd'\]"),
    (lambda: gradcheck(F.relu, [x], mode="half"), r"mode must be 'random' or 'full', got 'half'"),
    (lambda: gradcheck(F.relu, [Tensor(np.ones(2))]), r"no input requires a gradient"),
    (lambda: gradcheck(F.relu, [Tensor(np.ones(2, dtype=np.float32), requires_grad=True)]), r"float32"),
])
def test_argument_errors(call, message):
    with pytest.raises(ArgumentError, match=message):
        call()
    assert issubclass(ArgumentError, ValueError)
