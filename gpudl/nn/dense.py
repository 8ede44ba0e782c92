"""Fully connected layer y = x W + b (W[i, j] is the lecture's w_ij, input i to neuron j)."""
import numpy

from .. import functional as F
from . import init
from .module import Module, Parameter, check_input


class Dense(Module):
    def __init__(self, in_features, out_features, dtype=numpy.float32, rng=None):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense: feature counts must be positive, got ({in_features}, {out_features})")
        self.in_features, self.out_features = in_features, out_features
        self.W = Parameter(init.he_uniform((in_features, out_features), in_features, dtype, rng))
        self.b = Parameter(numpy.zeros(out_features, dtype=dtype))

    def forward(self, x):
        check_input(self, x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_features}), got {tuple(x.shape)}")
        self._x = x
        return self._forward_output(F.dense(x, self.W.data, self.b.data))

    def backward(self, dy, input_grad=True):
        """dx = dy W^T; dW and db add into W.grad and b.grad. input_grad=False skips dx (returns None)."""
        dy = self._backward_input(dy)
        dx, _, _ = F.dense_backward(self._x, self.W.data, dy, into=(self.W.grad, self.b.grad), input_grad=input_grad)
        self._x = None
        return dx

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"
